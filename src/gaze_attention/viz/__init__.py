"""Visualisation: Grad-CAM++ for video networks, gaze and attention overlays, writers."""

from gaze_attention.viz.gradcam import (
    CamResult,
    GradCAMPlusPlus,
    cam_from_activations,
    grad_cam_plus_plus,
    normalize_maps,
    upsample_maps,
)
from gaze_attention.viz.inputs import Clip, load_input, load_prepared_clip, load_video
from gaze_attention.viz.overlay import (
    draw_cells,
    draw_points,
    frames_to_uint8,
    grid_to_frames,
    overlay_heatmap,
    stack,
    title_bar,
)
from gaze_attention.viz.render import (
    OVERLAYS,
    ClipAnalysis,
    analyse_clip,
    default_cam_layers,
    render_clip,
    render_comparison,
    render_panels,
)
from gaze_attention.viz.writers import contact_sheet, write_gif, write_mp4, write_png, write_video

__all__ = [
    "OVERLAYS",
    "CamResult",
    "Clip",
    "ClipAnalysis",
    "GradCAMPlusPlus",
    "analyse_clip",
    "cam_from_activations",
    "contact_sheet",
    "default_cam_layers",
    "draw_cells",
    "draw_points",
    "frames_to_uint8",
    "grad_cam_plus_plus",
    "grid_to_frames",
    "load_input",
    "load_prepared_clip",
    "load_video",
    "normalize_maps",
    "overlay_heatmap",
    "render_clip",
    "render_comparison",
    "render_panels",
    "stack",
    "title_bar",
    "upsample_maps",
    "write_gif",
    "write_mp4",
    "write_png",
    "write_video",
]
