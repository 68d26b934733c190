"""Dense optical flow for preparation, stored as 8-bit images (the dense_flow convention)."""

from __future__ import annotations

import cv2
import numpy as np

from gaze_attention.constants import FLOW_METHODS

FLOW_BOUND = 20.0  # dense_flow convention: clip to +-20 px, map linearly to 0..255


def encode_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Float flow [H, W, 2] (px) -> uint8 [H, W, 2]; zero motion maps to 128."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.rint(scaled).astype(np.uint8)


def decode_flow(img: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 flow -> float flow in px (inverse of `encode_flow` up to quantisation)."""
    return img.astype(np.float32) * (2 * bound / 255.0) - bound


class FlowComputer:
    """Dense optical flow between consecutive grey frames with one of `FLOW_METHODS`.

    TV-L1 (opencv-contrib) is the paper's flow; `tvl1-torch` is the same algorithm in PyTorch
    (`gaze_attention.data.tvl1`), run on `device` over `batch` frame pairs at a time; DIS and
    Farneback are fast approximations.
    """

    def __init__(self, method: str = "tvl1", device: str = "auto", batch: int = 32) -> None:
        if method not in FLOW_METHODS or method == "none":
            raise ValueError(f"flow method must be one of tvl1, tvl1-torch, dis, farneback; got {method!r}")
        self.method = method
        self.batch = max(1, batch)
        self.device = None
        if method == "tvl1-torch":
            from gaze_attention.data.tvl1 import resolve_device

            self.device = resolve_device(device)
            self._algo = None
            if self.device.type == "cpu":
                import torch

                # prepare's worker processes set OpenCV to one thread each (the processes fill
                # the cores); the PyTorch flow keeps to the same budget.
                torch.set_num_threads(max(1, cv2.getNumThreads()))
        elif method == "tvl1":
            self._algo = cv2.optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            self._algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        else:
            self._algo = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """prev, nxt: uint8 grey [H, W] -> float32 flow [H, W, 2] (u right, v down)."""
        if self.device is not None:
            return self._torch_pairs(prev[None], nxt[None])[0]
        if self._algo is None:
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self._algo.calc(prev, nxt, None)

    def video(self, grey: list[np.ndarray]) -> np.ndarray:
        """L grey frames -> L encoded flow frames uint8 [L, H, W, 2].

        Flow i is frame i -> i+1; the last frame repeats the previous flow so that RGB and flow
        have the same length (a single frame gets zero flow).
        """
        h, w = grey[0].shape
        out = np.empty((len(grey), h, w, 2), dtype=np.uint8)
        if len(grey) == 1:
            out[:] = encode_flow(np.zeros((h, w, 2), np.float32))
            return out
        if self.device is not None:
            stack = np.stack(grey)  # [L, H, W]
            for s in range(0, len(grey) - 1, self.batch):
                e = min(s + self.batch, len(grey) - 1)
                out[s:e] = encode_flow(self._torch_pairs(stack[s:e], stack[s + 1 : e + 1]))
        else:
            for i in range(len(grey) - 1):
                out[i] = encode_flow(self(grey[i], grey[i + 1]))
        out[-1] = out[-2]
        return out

    def _torch_pairs(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W] pairs -> float32 flow [N, H, W, 2] with the PyTorch TV-L1."""
        import torch

        from gaze_attention.data.tvl1 import tvl1

        i0 = torch.from_numpy(np.ascontiguousarray(prev)).to(self.device)
        i1 = torch.from_numpy(np.ascontiguousarray(nxt)).to(self.device)
        return tvl1(i0, i1).permute(0, 2, 3, 1).cpu().numpy()
