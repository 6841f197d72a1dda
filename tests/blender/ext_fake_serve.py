"""`python -m spatia.cli serve --port P --data-dir D` as Start Backend runs it, served by the
fake backend: it writes a token to the data directory and requires it, like the real service."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]

import numpy as np  # noqa: E402

from ext_fake_backend import FakeBackend  # noqa: E402
from spatia_blender.safetensors_io import write_safetensors  # noqa: E402


def main(argv):
    port = int(argv[argv.index("--port") + 1])
    data_dir = argv[argv.index("--data-dir") + 1]
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "token"), "w") as handle:
        handle.write("local-token\n")
    arrays = {"xyz": np.zeros((3, 3), np.float32), "rgb": np.zeros((3, 3), np.uint8),
              "conf": np.ones(3, np.float32), "point_id": np.arange(3, dtype=np.int64)}
    FakeBackend({1: write_safetensors(arrays, {"voxel_size": "0.1"})}, token="local-token", port=port)
    print(f"serving on {port}", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv)
