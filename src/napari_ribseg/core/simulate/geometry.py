"""Probe geometry: the beam grid the physics runs on, and scan conversion to the displayed image.

The physics runs on a *beam grid*: rows are depth along a beam, columns are beam lines. For a
linear probe that grid is the image. For a convex or phased-array probe the beams fan out from a
virtual apex and the grid is scan-converted to a Cartesian image, black outside the sector, so
shadows follow the beam lines (radial) without any extra work. The image may fill only part of the
frame (``image_region``), with black margins around it.

Anatomy is described in *skin coordinates* ``(s, d)``: ``d`` is depth below the skin along the beam
and ``s`` the lateral position in millimetres. For a convex probe the skin conforms to the probe face,
so ``d`` is the radial distance from the face and ``s`` is arc length measured at the rib depth, where
rib widths and spacings are specified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_ribseg.core.simulate.config import SimulationConfig


@dataclass(frozen=True)
class BeamGrid:
    """Sample positions of the beam grid: depth ``d_mm`` (rows) and lateral ``s_mm`` (columns)."""

    n_rows: int
    n_cols: int
    dr_mm: float  # depth step along a beam
    ds_mm: float  # lateral step in skin coordinates
    probe: str
    radius_mm: float = 0.0  # convex only
    dtheta: float = 0.0  # convex only, radians per beam
    s_ref_radius_mm: float = 0.0  # convex only: radius at which s is arc length

    def lateral_pixel_mm(self, d_mm: np.ndarray) -> np.ndarray:
        """Physical distance between neighbouring beams at depth ``d_mm``."""
        d_mm = np.asarray(d_mm, dtype=np.float64)
        if self.probe == "linear":
            return np.full_like(d_mm, self.ds_mm)
        return (self.radius_mm + np.maximum(d_mm, 0.0)) * self.dtheta


@dataclass(frozen=True)
class ScanConverter:
    """Precomputed bilinear (image) and nearest (labels) lookups from beam grid to output pixels."""

    shape: tuple[int, int]
    inside: np.ndarray  # bool (H, W): pixels inside the fan
    flat_inside: np.ndarray  # flat output indices of inside pixels
    corners: np.ndarray  # (4, n_inside) flat beam-grid indices
    weights: np.ndarray  # (4, n_inside) float32 bilinear weights
    nearest: np.ndarray  # (n_inside,) flat beam-grid index

    def image(self, beam_image: np.ndarray) -> np.ndarray:
        """Scan-convert a float beam-grid image; pixels outside the fan are exactly 0."""
        flat = beam_image.reshape(-1)
        values = np.take(flat, self.corners)
        out = np.zeros(self.shape[0] * self.shape[1], dtype=np.float32)
        out[self.flat_inside] = np.einsum("ij,ij->j", values, self.weights)
        return out.reshape(self.shape)

    def labels(self, beam_labels: np.ndarray) -> np.ndarray:
        """Scan-convert a label beam-grid image by nearest neighbour; 0 outside the fan."""
        out = np.zeros(self.shape[0] * self.shape[1], dtype=beam_labels.dtype)
        out[self.flat_inside] = np.take(beam_labels.reshape(-1), self.nearest)
        return out.reshape(self.shape)


@dataclass(frozen=True)
class ProbeGeometry:
    """Beam grid, optional scan converter and the output pixel spacing of one configuration."""

    grid: BeamGrid
    converter: ScanConverter | None
    spacing_mm: tuple[float, float]

    @property
    def output_shape(self) -> tuple[int, int]:
        return (
            (self.grid.n_rows, self.grid.n_cols) if self.converter is None else self.converter.shape
        )


def _region_pixels(config: SimulationConfig) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) pixel bounds of ``config.image_region`` in the frame."""
    height, width = config.size
    top, left, bottom, right = config.image_region
    r0, r1 = int(round(top * height)), int(round(bottom * height))
    c0, c1 = int(round(left * width)), int(round(right * width))
    return r0, c0, max(r1, r0 + 16), max(c1, c0 + 16)


def _embed(inside: np.ndarray, shape: tuple[int, int], r0: int, c0: int) -> np.ndarray:
    full = np.zeros(shape, dtype=bool)
    full[r0 : r0 + inside.shape[0], c0 : c0 + inside.shape[1]] = inside
    return full


def probe_geometry(config: SimulationConfig) -> ProbeGeometry:
    """Build the beam grid (and for fans or framed images the scan converter) of ``config``."""
    height, width = config.size
    r0, c0, r1, c1 = _region_pixels(config)
    rh, rw = r1 - r0, c1 - c0
    depth = float(config.depth_mm)
    if config.probe == "linear":
        grid = BeamGrid(
            n_rows=rh,
            n_cols=rw,
            dr_mm=depth / rh,
            ds_mm=float(config.width_mm) / rw,
            probe="linear",
        )
        if (rh, rw) == (height, width):
            return ProbeGeometry(grid, None, (grid.dr_mm, grid.ds_mm))
        # The image in part of the frame: an identity lookup into the region.
        inside = _embed(np.ones((rh, rw), dtype=bool), (height, width), r0, c0)
        idx = np.arange(rh * rw, dtype=np.int64)
        converter = ScanConverter(
            shape=(height, width),
            inside=inside,
            flat_inside=np.flatnonzero(inside),
            corners=np.stack([idx, idx, idx, idx]),
            weights=np.stack(
                [np.ones(idx.size, np.float32)] + [np.zeros(idx.size, np.float32)] * 3
            ),
            nearest=idx,
        )
        return ProbeGeometry(grid, converter, (grid.dr_mm, grid.ds_mm))

    radius = float(config.convex_radius_mm)
    half = np.deg2rad(config.fov_deg) / 2.0
    # Cartesian frame with the virtual apex at the origin and y pointing down into the patient.
    y_top = radius * np.cos(half)
    y_bottom = radius + depth
    x_half = (radius + depth) * np.sin(half)
    aspect = float(config.pixel_aspect)
    pixel = max((y_bottom - y_top) / rh, 2.0 * x_half / (rw * aspect)) / float(config.fan_zoom)
    # The fan hangs from the top of the region, as scanners draw it; a zoomed fan keeps its top
    # and loses its sides and bottom, as a magnified scanner display does.
    y0 = y_top
    rows = y0 + (np.arange(rh) + 0.5) * pixel
    cols = (np.arange(rw) + 0.5 - rw / 2.0) * pixel * aspect
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    r = np.hypot(xx, yy)
    theta = np.arctan2(xx, yy)

    # Beams about as dense as output columns at the bottom of the fan, samples as dense as output
    # rows along depth, so the fan is neither aliased nor needlessly oversampled.
    n_rows = max(16, int(np.ceil(depth / pixel)))
    n_cols = max(16, int(np.ceil(2.0 * half * (radius + depth) / (pixel * aspect))))
    dr = depth / n_rows
    dtheta = 2.0 * half / n_cols
    s_ref = radius + float(config.rib_depth_mm)
    grid = BeamGrid(
        n_rows=n_rows,
        n_cols=n_cols,
        dr_mm=dr,
        ds_mm=s_ref * dtheta,
        probe="convex",
        radius_mm=radius,
        dtheta=dtheta,
        s_ref_radius_mm=s_ref,
    )

    # Beam-grid coordinates of each output pixel: row i at depth i*dr, column j at angle
    # (j + 0.5) * dtheta - half (beam centres).
    fi = (r - radius) / dr
    fj = (theta + half) / dtheta - 0.5
    inside = (fi >= 0) & (fi <= n_rows - 1) & (np.abs(theta) <= half) & (r >= radius)
    fj = np.clip(fj, 0.0, n_cols - 1.0)
    fi_in = fi[inside]
    fj_in = fj[inside]
    i0 = np.clip(np.floor(fi_in).astype(np.int64), 0, n_rows - 2)
    j0 = np.clip(np.floor(fj_in).astype(np.int64), 0, n_cols - 2)
    ti = (fi_in - i0).astype(np.float32)
    tj = (fj_in - j0).astype(np.float32)
    corners = np.stack(
        [i0 * n_cols + j0, i0 * n_cols + j0 + 1, (i0 + 1) * n_cols + j0, (i0 + 1) * n_cols + j0 + 1]
    )
    weights = np.stack([(1 - ti) * (1 - tj), (1 - ti) * tj, ti * (1 - tj), ti * tj]).astype(
        np.float32
    )
    ni = np.clip(np.rint(fi_in).astype(np.int64), 0, n_rows - 1)
    nj = np.clip(np.rint(fj_in).astype(np.int64), 0, n_cols - 1)
    # Row-major order inside the region is row-major order inside the frame, so the lookups
    # computed on the region serve the embedded fan unchanged.
    inside = _embed(inside, (height, width), r0, c0)
    converter = ScanConverter(
        shape=(height, width),
        inside=inside,
        flat_inside=np.flatnonzero(inside),
        corners=corners,
        weights=weights,
        nearest=ni * n_cols + nj,
    )
    return ProbeGeometry(grid, converter, (float(pixel), float(pixel * aspect)))
