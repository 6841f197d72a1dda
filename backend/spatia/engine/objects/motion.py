"""Where each object is over a round's frames: the artist's path where there is one, else the
object's motion state carried from round to round and propagated frame by frame by an
interacting-multiple-model filter over four motion hypotheses (constant velocity, constant turn
rate, stopped, reversal), each with its own uncertainty. Hypotheses stop at the memory's
surfaces, and a stop is part of the state the next round starts from. See docs/objects.md.

State, per hypothesis, in the ground plane (axes a, b of `plane_axes(up)`, right-handed with
up): x = (pa, pb, va, vb, omega, heading), covariance P [6,6], and the hypotheses' weights mu.
The object's height above the plane is kept apart (objects stay on their ground).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial import cKDTree

from .model import ObjectTrack, rotation, wrap_angle

# --- hypotheses ------------------------------------------------------------------------------------
CV, TURN, STOPPED, REVERSAL = 0, 1, 2, 3
MODES = ("constant velocity", "turn", "stopped", "reversal")
M = len(MODES)
# per second, how often each hypothesis gives way to another (a rate), and where it goes
LEAVE_RATE = np.array([1 / 20, 1 / 4, 1 / 20, 1 / 2])
SHARE = np.array([
    [0.0, 0.45, 0.40, 0.15],  # constant velocity -> turn, stop, reverse
    [0.70, 0.0, 0.20, 0.10],  # a turn ends in a straight line mostly
    [0.75, 0.15, 0.0, 0.10],  # a parked object drives off
    [0.80, 0.10, 0.10, 0.0],  # after turning round it goes straight
])
# The straight-on hypothesis' place kept pure (see step(); benchmarks/bench_motion.py): a walker
# that went straight on comes back 0.30 m off after 11 s unseen instead of 0.58 m (a car 0.45 m
# instead of 2.64 m), its spread as wide as mixing makes it. False: every hypothesis mixed.
PURE_STRAIGHT = True
ACCEL = np.array([0.08, 0.15, 0.02, 0.08])  # m/s^2: white-noise acceleration per hypothesis
TURN_ACCEL = np.array([0.02, 0.3, 0.02, 0.02])  # rad/s^2 on the turn rate
HEADING_NOISE = 0.05  # rad^2/s
INITIAL_WEIGHTS = np.array([0.45, 0.15, 0.30, 0.10])  # a new object's hypotheses
INITIAL_SPEED = {"car": 6.0, "person": 1.5}  # m/s: a new object's velocity uncertainty (1 sigma)
DEFAULT_INITIAL_SPEED = 2.0
INITIAL_TURN_RATE = 0.5  # rad/s
MEASURE_HEADING = 0.3  # rad: a registered heading's uncertainty (symmetric shapes turn easily)
MEASURE_SHARE = 0.3  # a registered position's uncertainty: this share of the object's point spacing ...
MIN_MEASURE_SIGMA = 0.03  # m: ... at least this
MIN_WEIGHT = 1e-6

PARKED_SPEED = 0.1  # m/s: slower than this is parked
BLOCK_POINTS = 5  # memory points inside an object's box (above its lowest fifth) that stop it
BOTTOM_SHARE = 0.2

# --- the drawing rule (render.py) and the lifecycle (tracking.py) read these ------------------------
DRAW_RATIO = 0.1  # drawn while its position uncertainty is at most this share of its footprint (shifted that far it still covers 90% of its place) ...
MIN_DRAW_SIGMA = 0.1  # ... (or this many metres, for tiny objects)


def plane_axes(up) -> tuple[np.ndarray, np.ndarray]:
    """Two axes (a, b) spanning the plane normal to `up`, right-handed with it (a x b = up)."""
    up = np.asarray(up, np.float64)
    a = np.eye(3)[int(np.argmin(np.abs(up)))]
    a = a - np.dot(a, up) * up
    a /= np.linalg.norm(a)
    return a, np.cross(up, a)


def footprint(track: ObjectTrack, up) -> float:
    """The object's largest extent across the ground plane (metres): a car's length, a person's
    breadth; not its height, which a position error in the plane never shifts."""
    if not len(track.xyz):
        return 0.0
    a, b = plane_axes(up)
    local = track.xyz.astype(np.float64)
    return float(max(np.ptp(local @ a), np.ptp(local @ b)))


def draw_limit(track: ObjectTrack, up) -> float:
    """The position uncertainty (metres, 1 sigma) up to which the object is drawn: DRAW_RATIO of
    its footprint, at least MIN_DRAW_SIGMA. The error lies in the ground plane, so it is weighed
    against the object's size there; weighed against his height, a walker who turned round
    unseen was drawn lagging behind himself once seen again (docs/objects.md)."""
    return limit_for(footprint(track, up))


def size_limit(track: ObjectTrack) -> float:
    """DRAW_RATIO of the object's largest extent, height included (at least MIN_DRAW_SIGMA): the
    scale of "roughly where it is" that the lifecycle measures uncertainty against."""
    return limit_for(float(track.extent.max(initial=0.0)))


def limit_for(size: float) -> float:
    """DRAW_RATIO of a size in metres, at least MIN_DRAW_SIGMA."""
    return max(MIN_DRAW_SIGMA, DRAW_RATIO * size)


@dataclass(frozen=True, eq=False)
class MotionState:
    """The weighted hypotheses at `frame`: x [M,6], p [M,6,6], mu [M]; `height` along up;
    `evidence`: the share of belief not contradicted by views of its place since it was last seen."""

    frame: int
    x: np.ndarray
    p: np.ndarray
    mu: np.ndarray
    height: float
    evidence: float = 1.0

    def best(self) -> int:
        return int(np.argmax(self.mu))

    def pose(self, up, mode: int | None = None) -> tuple[np.ndarray, float]:
        j = self.best() if mode is None else mode
        a, b = plane_axes(up)
        return a * self.x[j, 0] + b * self.x[j, 1] + np.asarray(up) * self.height, float(wrap_angle(self.x[j, 5]))

    def sigma(self) -> float:
        return float(mixture_sigma(self.x[None], self.p[None], self.mu[None])[0])

    def as_dict(self) -> dict:
        return {"frame": int(self.frame), "x": np.round(self.x, 6).tolist(), "p": np.round(self.p, 8).tolist(),
                "mu": np.round(self.mu, 8).tolist(), "height": float(self.height), "evidence": float(self.evidence)}

    @staticmethod
    def from_dict(d: dict) -> "MotionState":
        x, p, mu = (np.asarray(d[k], np.float64) for k in ("x", "p", "mu"))
        if x.shape != (M, 6) or p.shape != (M, 6, 6) or mu.shape != (M,):
            raise ValueError(f"a motion state needs x [{M},6], p [{M},6,6], mu [{M}]")
        if not (np.isfinite(x).all() and np.isfinite(p).all() and np.isfinite(mu).all()):
            raise ValueError("a motion state is not finite")
        return MotionState(int(d["frame"]), x, p, mu / max(mu.sum(), MIN_WEIGHT), float(d["height"]),
                           float(d.get("evidence", 1.0)))


def mixture_sigma(x: np.ndarray, p: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """[F] position uncertainty about the most likely hypothesis' place: sqrt(sum_j mu_j
    (trace P_j,pos / 2 + |pos_j - pos_best|^2)), from x [F,M,6], p [F,M,6,6], mu [F,M]."""
    best = np.argmax(mu, axis=1)
    centre = x[np.arange(len(x)), best, :2]
    spread = ((x[..., :2] - centre[:, None]) ** 2).sum(-1)
    own = (p[..., 0, 0] + p[..., 1, 1]) / 2
    return np.sqrt((mu * (own + spread)).sum(axis=1))


# --- one step of the filter ---------------------------------------------------------------------------
def transitions(dt: float) -> np.ndarray:
    """p[i, j]: the chance that hypothesis i gives way to j within dt seconds."""
    stay = np.exp(-LEAVE_RATE * dt)
    out = (1 - stay)[:, None] * SHARE
    out[np.arange(M), np.arange(M)] = stay
    return out


def _enter(x: np.ndarray) -> np.ndarray:
    """x [M,M,6]: hypothesis i's state as it enters j (a reversal turns the velocity round)."""
    out = np.repeat(x[:, None], M, axis=1)
    for i in range(M):
        if i != REVERSAL:
            out[i, REVERSAL, 2:4] *= -1
            out[i, REVERSAL, 5] += np.pi
    out[:, STOPPED, 2:5] = 0.0
    return out


def _dynamics(x: np.ndarray, dt: float) -> np.ndarray:
    """x [M,6] after dt seconds under each hypothesis' own motion."""
    out = x.copy()
    # constant velocity and reversal
    for j in (CV, REVERSAL):
        out[j, :2] += x[j, 2:4] * dt
    # constant turn: the velocity turns by omega dt, the position follows the mean velocity
    w = x[TURN, 4] * dt
    c, s = np.cos(w), np.sin(w)
    v = x[TURN, 2:4]
    turned = np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
    out[TURN, :2] += 0.5 * (v + turned) * dt
    out[TURN, 2:4] = turned
    out[TURN, 5] += w
    out[STOPPED, 2:5] = 0.0
    return out


def _jacobians(x: np.ndarray, dt: float) -> np.ndarray:
    """F [M,6,6] of _dynamics at x (the turn numerically)."""
    f = np.tile(np.eye(6), (M, 1, 1))
    for j in (CV, REVERSAL):
        f[j, 0, 2] = f[j, 1, 3] = dt
    f[STOPPED, 2:5, 2:5] = 0.0
    eps = 1e-6
    base = _dynamics(x, dt)[TURN]
    for k in range(6):
        step = x.copy()
        step[TURN, k] += eps
        f[TURN, :, k] = (_dynamics(step, dt)[TURN] - base) / eps
    return f


def _noise(dt: float) -> np.ndarray:
    q = np.zeros((M, 6, 6))
    g = np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
    for axis in (0, 1):
        idx = np.ix_([axis, axis + 2], [axis, axis + 2])
        for j in range(M):
            q[j][idx] = g * ACCEL[j] ** 2
    q[:, 4, 4] = TURN_ACCEL ** 2 * dt
    q[:, 5, 5] = HEADING_NOISE * dt
    return q


def step(x, p, mu, dt: float):
    """One interacting-multiple-model prediction over dt seconds: the hypotheses mix by the
    chance of giving way to one another, then each moves by its own motion -> (x, p, mu)."""
    pij = transitions(dt) * mu[:, None]
    c = pij.sum(axis=0)
    w = pij / np.maximum(c, MIN_WEIGHT)  # w[i, j]: the share of i in j
    entered = _enter(x)  # [i, j, 6]
    ref = entered[np.argmax(w, axis=0), np.arange(M), 5]
    entered[..., 5] = ref[None] + wrap_angle(entered[..., 5] - ref[None])
    x0 = np.einsum("ij,ijk->jk", w, entered)
    if PURE_STRAIGHT:
        # The straight-on hypothesis' place is that of "straight on since it was last seen": its
        # weight still takes in the others (the chance it goes straight now), its mean does not,
        # or a mover out of view for long would lag behind itself by what the others allow for.
        # Its spread (below, about that place) still counts what the others allow for, so
        # association holds as wide a gate around it as before.
        x0[CV] = x[CV]
    d = entered - x0[None]
    p0 = np.einsum("ij,ikl->jkl", w, p) + np.einsum("ij,ijk,ijl->jkl", w, d, d)
    f = _jacobians(x0, dt)
    x1 = _dynamics(x0, dt)
    p1 = f @ p0 @ np.transpose(f, (0, 2, 1)) + _noise(dt)
    return x1, p1, np.maximum(c, MIN_WEIGHT) / np.maximum(c, MIN_WEIGHT).sum()


def update(x, p, mu, z_ab: np.ndarray, z_heading: float, sigma: float):
    """The hypotheses after one registered pose (position in the plane, heading): a Kalman
    update of each and their weights by how well each predicted the position -> (x, p, mu)."""
    h = np.zeros((3, 6))
    h[0, 0] = h[1, 1] = h[2, 5] = 1.0
    r = np.diag([sigma ** 2, sigma ** 2, MEASURE_HEADING ** 2])
    x, p = x.copy(), p.copy()
    like = np.zeros(M)
    for j in range(M):
        y = np.array([z_ab[0] - x[j, 0], z_ab[1] - x[j, 1], float(wrap_angle(z_heading - x[j, 5]))])
        s = h @ p[j] @ h.T + r
        k = p[j] @ h.T @ np.linalg.inv(s)
        sp = s[:2, :2]
        like[j] = np.exp(-0.5 * y[:2] @ np.linalg.solve(sp, y[:2])) / (2 * np.pi * np.sqrt(max(np.linalg.det(sp), 1e-12)))
        x[j] = x[j] + k @ y
        p[j] = (np.eye(6) - k @ h) @ p[j]
        p[j] = 0.5 * (p[j] + p[j].T)
    mu = mu * np.maximum(like, 1e-300)
    if mu.sum() <= 0 or not np.isfinite(mu).all():
        mu = np.full(M, 1.0 / M)
    mu = np.maximum(mu / mu.sum(), MIN_WEIGHT)
    return x, p, mu / mu.sum()


def initial_state(frame: int, position, heading: float, up, label: str, sigma: float) -> MotionState:
    a, b = plane_axes(up)
    position = np.asarray(position, np.float64)
    x = np.tile([position @ a, position @ b, 0.0, 0.0, 0.0, heading], (M, 1))
    v0 = INITIAL_SPEED.get(label, DEFAULT_INITIAL_SPEED)
    p = np.tile(np.diag([sigma ** 2, sigma ** 2, v0 ** 2, v0 ** 2, INITIAL_TURN_RATE ** 2, MEASURE_HEADING ** 2]),
                (M, 1, 1))
    p[STOPPED, 2:5, 2:5] = 0.0
    x[STOPPED, 2:5] = 0.0
    return MotionState(int(frame), x, p, INITIAL_WEIGHTS.copy(), float(position @ np.asarray(up, np.float64)))


def advance(state: MotionState, frame: int, fps: float) -> MotionState:
    """The state propagated frame by frame to `frame` (no obstacles)."""
    x, p, mu = state.x, state.p, state.mu
    for _ in range(max(0, int(frame) - state.frame)):
        x, p, mu = step(x, p, mu, 1.0 / fps)
    return replace(state, frame=max(int(frame), state.frame), x=x, p=p, mu=mu)


def observe_pose(state: MotionState, frame: int, position, heading: float, up, fps: float, sigma: float) -> MotionState:
    """The state after a registered pose at `frame` (propagated there first)."""
    state = advance(state, frame, fps)
    a, b = plane_axes(up)
    position = np.asarray(position, np.float64)
    x, p, mu = update(state.x, state.p, state.mu, np.array([position @ a, position @ b]), float(heading), sigma)
    up = np.asarray(up, np.float64)
    return MotionState(state.frame, x, p, mu, float(position @ up), 1.0)


def measure_sigma(track: ObjectTrack) -> float:
    """A registered position's uncertainty (1 sigma, metres). Registration puts many points on
    the object at once: on the scenario suite (96x72) the observed positions of a clip scatter
    about a straight line by a tenth of the point spacing (median; 0.27 at the 90th percentile),
    so a whole spacing made a walker seen for a second look parked."""
    return max(MIN_MEASURE_SIGMA, MEASURE_SHARE * float(track.spacing))


def fit_state(track: ObjectTrack, fps: float, up) -> MotionState:
    """A state for a track that has none (made before states were kept, or a copy): the filter
    run over its observed poses."""
    sigma = measure_sigma(track)
    state = initial_state(int(track.key_frame[0]), track.key_position[0], float(track.key_heading[0]), up,
                          track.label, sigma)
    for f, pos, h in zip(track.key_frame[1:], track.key_position[1:], track.key_heading[1:]):
        state = observe_pose(state, int(f), pos, float(h), up, fps, sigma)
    return state


def state_of(track: ObjectTrack, fps: float, up) -> MotionState:
    return track.motion if track.motion is not None else fit_state(track, fps, up)


# --- a round's poses ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PosePath:
    """Poses of one object at `frames` (int64 [F]): position float64 [F,3], heading [F].
    sigma [F]: the position uncertainty (metres; 0 on the artist's path and where observed);
    drawn bool [F]: whether it is drawn into the conditioning there (docs/objects.md).
    hypotheses: per frame and hypothesis, position [F,M,3], heading [F,M], weight [F,M] and its own
    position uncertainty [F,M] (sqrt(trace P_pos / 2), without the spread between hypotheses; None
    on the artist's path); end: the motion state at the last frame."""

    frames: np.ndarray
    position: np.ndarray
    heading: np.ndarray
    source: str  # "path" (the artist's), "motion", "parked", "lost", "retired", "observed"
    sigma: np.ndarray | None = None
    drawn: np.ndarray | None = None
    hypotheses: tuple | None = field(default=None, repr=False)
    end: MotionState | None = field(default=None, repr=False)

    def __post_init__(self):
        n = len(self.frames)
        if self.sigma is None:
            object.__setattr__(self, "sigma", np.zeros(n))
        if self.drawn is None:
            object.__setattr__(self, "drawn", np.ones(n, bool))

    def at(self, frames) -> tuple[np.ndarray, np.ndarray]:
        return interpolate(self.frames, self.position, self.heading, frames)

    def sigma_at(self, frames) -> np.ndarray:
        return np.interp(np.asarray(frames, np.float64), self.frames.astype(np.float64), self.sigma)

    def subset(self, index) -> "PosePath":
        return PosePath(self.frames[index], self.position[index], self.heading[index], self.source,
                        self.sigma[index], self.drawn[index])

    def as_dict(self) -> dict:
        return {"frames": self.frames.tolist(), "position": np.round(self.position, 5).tolist(),
                "heading": np.round(self.heading, 6).tolist(), "sigma": np.round(self.sigma, 4).tolist(),
                "drawn": [bool(d) for d in self.drawn]}

    @staticmethod
    def from_dict(d: dict, source: str) -> "PosePath":
        """A path as `as_dict` wrote it (records written before `drawn` was kept draw everywhere)."""
        frames = np.array(d["frames"], np.int64)
        return PosePath(frames, np.array(d["position"], np.float64).reshape(-1, 3), np.array(d["heading"], np.float64),
                        source, np.array(d.get("sigma", np.zeros(len(frames))), np.float64),
                        np.array(d.get("drawn", np.ones(len(frames), bool)), bool))


def interpolate(key_frames, key_position, key_heading, frames) -> tuple[np.ndarray, np.ndarray]:
    """Poses between keys (linear position, shortest-turn heading), held before the first key
    and after the last, as Blender's constant extrapolation does."""
    kf = np.asarray(key_frames, np.float64)
    frames = np.asarray(frames, np.float64)
    kp, kh = np.asarray(key_position, np.float64).reshape(-1, 3), np.asarray(key_heading, np.float64)
    position = np.stack([np.interp(frames, kf, kp[:, i]) for i in range(3)], axis=-1)
    unwrapped = kh[0] + np.concatenate([[0.0], np.cumsum(wrap_angle(np.diff(kh)))])
    return position, wrap_angle(np.interp(frames, kf, unwrapped))


def velocity(track: ObjectTrack, fps: float, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """The velocity (m/s, world) of the track's most likely hypothesis."""
    state = state_of(track, fps, up)
    a, b = plane_axes(up)
    j = state.best()
    return a * state.x[j, 2] + b * state.x[j, 3]


def predict(track: ObjectTrack, frames, fps: float, up: np.ndarray, *, path=None, obstacles=None,
            status: str | None = None) -> PosePath:
    """The object's poses at `frames` (video indices). `path`: the artist's keys (frames,
    positions [K,3], headings [K]), which take precedence. Else its motion state, propagated
    frame by frame from where the last round left it; `obstacles`: static memory points [N,3]
    no hypothesis moves the object into (a hypothesis that would is held there, stopped).
    Frames up to the state's own are the observed poses (and a straight line from the last of
    them to the state's pose). `status`: the track's lifecycle ("lost" / "retired": not drawn)."""
    frames = np.asarray(frames, np.int64)
    status = status or track.status
    if path is not None and len(path[0]):
        position, heading = interpolate(*path, frames)
        return PosePath(frames, position, heading, "path")
    up = np.asarray(up, np.float64)
    state = state_of(track, fps, up)
    position, heading = interpolate(track.key_frame, track.key_position, track.key_heading, frames)
    sigma = np.zeros(len(frames))
    limit = draw_limit(track, up)
    # between the last observed pose and the state's own frame (unseen rounds before this one)
    last = track.last_frame
    between = (frames > last) & (frames <= state.frame)
    s_pos, s_head = state.pose(up)
    s_sigma = state.sigma()
    if between.any():
        # back from the state along its most likely velocity (a stop stays a stop), or a straight
        # line from the last observed pose where that would reach back past it
        t = (frames[between] - last) / max(state.frame - last, 1)
        line = track.key_position[-1] + t[:, None] * (s_pos - track.key_position[-1])
        a_, b_ = plane_axes(up)
        v = a_ * state.x[state.best(), 2] + b_ * state.x[state.best(), 3]
        back = s_pos - np.outer((state.frame - frames[between]) / fps, v)
        reach = np.linalg.norm(track.key_position[-1] - s_pos)
        use_back = np.linalg.norm(back - s_pos, axis=1) <= reach
        position[between] = np.where(use_back[:, None], back, line)
        heading[between] = np.where(use_back, s_head,
                                    wrap_angle(track.key_heading[-1] + t * wrap_angle(s_head - track.key_heading[-1])))
        sigma[between] = t * s_sigma
    ahead = frames > state.frame
    n = int(frames.max() - state.frame) if ahead.any() else 0
    hx = np.repeat(state.x[None], len(frames), axis=0)
    hp = np.repeat(state.p[None], len(frames), axis=0)
    hmu = np.repeat(state.mu[None], len(frames), axis=0)
    end = state
    if n > 0:
        xs, ps, mus = _propagate(track, state, n, fps, up, obstacles)
        idx = frames[ahead] - state.frame - 1
        hx[ahead], hp[ahead], hmu[ahead] = xs[idx], ps[idx], mus[idx]
        sigma[ahead] = mixture_sigma(hx[ahead], hp[ahead], hmu[ahead])
        best = np.argmax(hmu[ahead], axis=1)
        a, b = plane_axes(up)
        chosen = hx[ahead][np.arange(int(ahead.sum())), best]
        position[ahead] = chosen[:, :1] * a + chosen[:, 1:2] * b + up * state.height
        heading[ahead] = wrap_angle(chosen[:, 5])
        end = replace(state, frame=state.frame + n, x=xs[-1], p=ps[-1], mu=mus[-1])
    a, b = plane_axes(up)
    hyp_position = hx[..., :1] * a + hx[..., 1:2] * b + up * state.height
    hyp_position[~ahead] = position[~ahead][:, None]
    hyp_sigma = np.sqrt(np.maximum(hp[..., 0, 0] + hp[..., 1, 1], 0.0) / 2)
    hyp_sigma[~ahead] = sigma[~ahead][:, None]
    drawn = sigma <= limit
    if status != "confirmed" or not track.crops:
        # only an object seen in enough keyframes, and seen whole at least once (a view cut by the
        # image's edge gives no pose to trust), is drawn; a lost or retired one never is
        drawn[:] = False
    moving = float(np.linalg.norm(state.x[state.best(), 2:4])) >= PARKED_SPEED and state.best() != STOPPED
    source = status if status in ("lost", "retired") else ("motion" if moving else "parked")
    return PosePath(frames, position, heading, source, sigma, drawn,
                    (hyp_position, wrap_angle(hx[..., 5]), hmu, hyp_sigma), end)


def _propagate(track: ObjectTrack, state: MotionState, n: int, fps: float, up, obstacles):
    """The hypotheses over the next n frames: x [n,M,6], p [n,M,6,6], mu [n,M]; a hypothesis
    whose box would enter the memory's surfaces is held where it was and stopped."""
    a, b = plane_axes(up)
    near = None
    if obstacles is not None and len(obstacles) and len(track.xyz):
        reach = float(np.linalg.norm(np.abs(track.xyz).max(axis=0)))
        speed = float(np.abs(state.x[:, 2:4]).max()) + 3.0 * float(np.sqrt(state.p[:, 2:4, 2:4].max()))
        pos0, _ = state.pose(up)
        span = speed * n / fps + reach
        obstacles = np.asarray(obstacles)
        box = (obstacles >= pos0 - span).all(axis=1) & (obstacles <= pos0 + span).all(axis=1)
        near = obstacles[box].astype(np.float64)
        if len(near):
            near = near[~_inside(track, up, near, *state.pose(up))]  # ground bumps, leftovers of itself
        if not len(near):
            near = None
    xs, ps, mus = np.zeros((n, M, 6)), np.zeros((n, M, 6, 6)), np.zeros((n, M))
    x, p, mu = state.x, state.p, state.mu
    dt = 1.0 / fps
    # the box at any pose lies within `reach` of its position: only points that close are tested
    tree = cKDTree(near) if near is not None else None
    for k in range(n):
        prev = x
        x, p, mu = step(x, p, mu, dt)
        if near is not None:
            for j in range(M):
                if np.hypot(*x[j, 2:4]) < PARKED_SPEED:
                    continue
                pos = a * x[j, 0] + b * x[j, 1] + up * state.height
                close = tree.query_ball_point(pos, reach)
                if len(close) < BLOCK_POINTS:
                    continue
                if np.count_nonzero(_inside(track, up, near[close], pos, x[j, 5])) >= BLOCK_POINTS:
                    x = x.copy()
                    p = p.copy()
                    x[j, :2] = prev[j, :2]
                    x[j, 2:5] = 0.0
                    p[j, 2:5, :] = 0.0
                    p[j, :, 2:5] = 0.0
        xs[k], ps[k], mus[k] = x, p, mu
    return xs, ps, mus


def _inside(track: ObjectTrack, up: np.ndarray, points: np.ndarray, position, heading) -> np.ndarray:
    """Which `points` lie in the object's box at a pose, above the lowest BOTTOM_SHARE of it."""
    local = (points - position) @ rotation(up, heading)  # R^T (p - position), row vectors
    lo, hi = track.xyz.min(axis=0), track.xyz.max(axis=0)
    h = track.xyz @ up
    floor = h.min() + BOTTOM_SHARE * np.ptp(h)
    return (local >= lo).all(axis=1) & (local <= hi).all(axis=1) & (local @ up >= floor)
