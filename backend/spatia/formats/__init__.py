"""Files and interop: atomic writes, frames and video, the shot spec, presets and camera formats
(Spatia reference cases, COLMAP, nerfstudio). Depends on spatia.cameras only."""
