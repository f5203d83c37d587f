import numpy as np

class TritonPythonModel:
    def execute(self, requests)
        return []
