#!/usr/bin/env python3
"""OCR reference: the Python package rapidocr-onnxruntime (1.4.4, installed by scripts/setup.sh venv)
reads IMAGE with its default configuration and prints one JSON line per text line:
{"box": [[x, y] x4], "text": "...", "score": 0.97}, in the package's order.

Usage: ocr_reference.py IMAGE [IMAGE...]  (with several images, each line also has "image").

The image is decoded here with Pillow as RGB and handed to the package as a BGR array: given a path,
the package would read a palette PNG (samples/media/imageTextN.png) as its palette indices, i.e. as
a grey image of meaningless values (it then finds 2 lines instead of 13). Vigil's side decodes the
same file to the same RGB pixels.
"""
import json
import sys

import numpy as np
from PIL import Image

from rapidocr_onnxruntime import RapidOCR


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    engine = RapidOCR()
    for path in sys.argv[1:]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        result, _elapse = engine(np.ascontiguousarray(rgb[:, :, ::-1]))
        for box, text, score in result or []:
            line = {"box": [[float(x), float(y)] for x, y in box], "text": text, "score": float(score)}
            if len(sys.argv) > 2:
                line["image"] = path
            print(json.dumps(line, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
