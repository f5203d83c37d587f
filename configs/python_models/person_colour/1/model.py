"""The colour of a person's clothes, from the torso of the person's crop (see config.pbtxt)."""
import numpy as np
import triton_python_backend_utils as pb_utils

# labels.txt, in order.
BLACK, WHITE, GREY, RED, ORANGE, YELLOW, GREEN, BLUE, PURPLE = range(9)
# Hue (degrees) upper bounds of the chromatic colours; red wraps around 360.
HUES = [(15, RED), (40, ORANGE), (70, YELLOW), (165, GREEN), (260, BLUE), (330, PURPLE), (360, RED)]


def colour_votes(rgb):
    """Per pixel of an [H, W, 3] array of 0-255 values: the index of its colour."""
    rgb = rgb.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = mx - mn
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    saturation = np.where(mx > 0, chroma / np.where(mx > 0, mx, 1.0), 0.0)
    votes = np.full(mx.shape, GREY, np.int64)
    votes[mx < 0.2] = BLACK
    votes[(mx >= 0.75) & (saturation < 0.15)] = WHITE
    chromatic = (mx >= 0.2) & (saturation >= 0.3)
    lower = 0
    for upper, colour in HUES:
        votes[chromatic & (hue >= lower) & (hue < upper)] = colour
        lower = upper
    return votes


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            crops = pb_utils.get_input_tensor_by_name(request, "CROP").as_numpy()  # [N, 3, 128, 64]
            rows = []
            for crop in crops:
                _, h, w = crop.shape
                y1, y2, x1, x2 = int(0.20 * h), int(0.55 * h), int(0.25 * w), int(0.75 * w)
                torso = np.transpose(crop[:, y1:y2, x1:x2], (1, 2, 0))
                counts = np.bincount(colour_votes(torso).ravel(), minlength=9)
                colour = int(counts.argmax())
                share = counts[colour] / max(1, counts.sum())
                rows.append([x1, y1, x2, y2, share, colour])
            boxes = np.asarray(rows, np.float32).reshape(len(rows), 1, 6)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("BOXES", boxes)]))
        return responses
