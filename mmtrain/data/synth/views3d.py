"""Multi-view renders of simple 3D objects: the 3D half of the synthetic world.

One object (sphere, cube, cylinder or torus, one colour from scenes.COLOURS) sits at the
origin of a right-handed world with +z up. Cameras sit on a ring around it (evenly spaced
azimuths from a random start, random elevations) and look at the origin.

Camera convention (OpenGL / NeRF "transforms.json"): a pose is a camera-to-world 4x4
matrix [R | t]; the camera looks down its -z axis, +x is right, +y is up in the image.
Pixel (row v, column u) has camera-frame direction ((u + 0.5 - W/2) / f,
-(v + 0.5 - H/2) / f, -1). `camera_rays` implements exactly this, for renderers and
NeRF-style models alike.

Images come from sphere tracing exact signed distance functions, shaded Lambertian under
a fixed world light (view-independent, as NeRF assumes) on a plain background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtrain.data.synth.scenes import BACKGROUNDS, COLOURS

OBJECT_KINDS = ("sphere", "cube", "cylinder", "torus")
WORLD_UP = np.array([0.0, 0.0, 1.0])
BACKGROUND = "white"
BOUND = 1.1  # every unit-scale shape fits in this sphere (cube corner: 0.6 * sqrt(3))
LIGHT = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
AMBIENT = 0.3
CAMERA_DISTANCE = 4.0
FOV_DEGREES = 40.0  # at distance 4 the frame spans about +-1.46 world units
ELEVATION_DEGREES = (10.0, 50.0)
MAX_TRACE_STEPS = 64
HIT_EPSILON = 2e-3


@dataclass(frozen=True)
class Object3D:
    kind: str
    colour: str
    scale: float  # multiplies the unit shape; the object stays inside BOUND * scale

    def caption(self) -> str:
        return f"a {self.colour} {self.kind}"


@dataclass(frozen=True)
class CameraRig:
    poses: np.ndarray  # (V, 4, 4) float32 camera-to-world, OpenGL convention
    focal: float  # pixels, same for x and y
    height: int
    width: int
    near: float
    far: float


def sample_object(rng: np.random.Generator) -> Object3D:
    kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    return Object3D(kind, colour, round(float(rng.uniform(0.75, 1.0)), 3))


def look_at(eyes: np.ndarray) -> np.ndarray:
    """Camera-to-world matrices (N, 4, 4) of cameras at `eyes` (N, 3) looking at the origin
    (-z forward), with image up towards world +z. No eye may lie on the z axis."""
    z = eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)  # camera +z points away
    x = np.cross(WORLD_UP, z)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    poses = np.zeros((len(eyes), 4, 4))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2], poses[:, :3, 3] = x, np.cross(z, x), z, eyes
    poses[:, 3, 3] = 1
    return poses


def sample_rig(rng: np.random.Generator, views: int = 8, size: int = 32) -> CameraRig:
    azimuths = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(views) / views
    elevations = np.radians(rng.uniform(*ELEVATION_DEGREES, size=views))
    eyes = CAMERA_DISTANCE * np.stack(
        [
            np.cos(elevations) * np.cos(azimuths),
            np.cos(elevations) * np.sin(azimuths),
            np.sin(elevations),
        ],
        axis=-1,
    )
    poses = look_at(eyes).astype(np.float32)
    focal = 0.5 * size / np.tan(np.radians(FOV_DEGREES) / 2)
    return CameraRig(
        poses, float(focal), size, size, CAMERA_DISTANCE - BOUND, CAMERA_DISTANCE + BOUND
    )


def camera_rays(
    poses: np.ndarray, focal: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray origins and unit directions, each (V, H, W, 3), for (V, 4, 4) poses."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    dirs = np.stack([(u - width / 2) / focal, -(v - height / 2) / focal, -np.ones_like(u)], -1)
    dirs = dirs @ poses[:, None, :3, :3].astype(np.float64).transpose(0, 1, 3, 2)
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = np.broadcast_to(poses[:, None, None, :3, 3], dirs.shape).astype(np.float64)
    return origins, dirs


def _unit_sdf(kind: str, p: np.ndarray) -> np.ndarray:
    """Exact signed distances (so sphere tracing never oversteps) of unit-scale shapes at
    points p (N, 3). Written per coordinate: much faster than norms over a last axis."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    if kind == "sphere":
        return np.sqrt(x * x + y * y + z * z) - 0.8
    if kind == "cube":
        qx, qy, qz = np.abs(x) - 0.6, np.abs(y) - 0.6, np.abs(z) - 0.6
        return _outside(qx, qy, qz) + np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)
    if kind == "cylinder":  # axis along z
        qr, qz = np.sqrt(x * x + y * y) - 0.55, np.abs(z) - 0.7
        return _outside(qr, qz) + np.minimum(np.maximum(qr, qz), 0)
    if kind == "torus":  # lying in the xy plane, so elevated cameras see the hole
        qr = np.sqrt(x * x + y * y) - 0.65
        return np.sqrt(qr * qr + z * z) - 0.28
    raise ValueError(f"unknown object kind {kind!r}; valid: {', '.join(OBJECT_KINDS)}")


def _outside(*q: np.ndarray) -> np.ndarray:
    """Length of the positive part of the vector q: the outside distance of a box SDF."""
    return np.sqrt(sum(np.maximum(c, 0) ** 2 for c in q))


def _sdf(obj: Object3D, p: np.ndarray) -> np.ndarray:
    return obj.scale * _unit_sdf(obj.kind, p / obj.scale)


def _trace(
    obj: Object3D, o: np.ndarray, d: np.ndarray, t: np.ndarray, t_exit: np.ndarray
) -> np.ndarray:
    """Sphere-traces rays from distance t; returns which rays hit, their t updated in place.
    Converged and escaped rays leave the working set, so grazing rays can take many steps
    without every ray paying for them."""
    hit = np.zeros(len(t), dtype=bool)
    live = np.arange(len(t))
    for _ in range(MAX_TRACE_STEPS):
        dist = _sdf(obj, o[live] + t[live, None] * d[live])
        t[live] += dist
        converged = dist < HIT_EPSILON
        hit[live[converged]] = True
        live = live[~converged & (t[live] < t_exit[live])]
        if not live.size:
            break
    return hit


def render_views(obj: Object3D, rig: CameraRig) -> np.ndarray:
    """(V, H, W, 3) uint8 images of `obj` seen from every camera of `rig`."""
    origins, dirs = camera_rays(rig.poses, rig.focal, rig.height, rig.width)
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    image = np.empty_like(origins)
    image[:] = BACKGROUNDS[BACKGROUND]

    # Only rays entering the bounding sphere can hit; march them from its entry point.
    radius = BOUND * obj.scale
    b = (origins * dirs).sum(-1)
    disc = b**2 - (origins**2).sum(-1) + radius**2
    rays = np.flatnonzero(disc > 0)
    o, d, root = origins[rays], dirs[rays], np.sqrt(disc[rays])
    t = -b[rays] - root
    hit = _trace(obj, o, d, t, t_exit=-b[rays] + root)
    rays, points = rays[hit], o[hit] + t[hit, None] * d[hit]

    # Normals from central differences of the SDF.
    offsets = np.eye(3) * 1e-3
    normals = np.stack([_sdf(obj, points + e) - _sdf(obj, points - e) for e in offsets], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-12
    shade = AMBIENT + (1 - AMBIENT) * np.clip(normals @ LIGHT, 0, 1)
    image[rays] = shade[:, None] * np.array(COLOURS[obj.colour], dtype=np.float64)
    return np.round(image).astype(np.uint8).reshape(len(rig.poses), rig.height, rig.width, 3)
