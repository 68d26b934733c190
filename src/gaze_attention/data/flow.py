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

    TV-L1 (opencv-contrib) is the paper's flow; DIS and Farneback are fast approximations.
    """

    def __init__(self, method: str = "tvl1") -> None:
        if method not in FLOW_METHODS or method == "none":
            raise ValueError(f"flow method must be one of tvl1, dis, farneback; got {method!r}")
        self.method = method
        if method == "tvl1":
            self._algo = cv2.optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            self._algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        else:
            self._algo = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """prev, nxt: uint8 grey [H, W] -> float32 flow [H, W, 2] (u right, v down)."""
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
        for i in range(len(grey) - 1):
            out[i] = encode_flow(self(grey[i], grey[i + 1]))
        out[-1] = out[-2]
        return out
