"""Fuzzing the OpenAPI surface with hypothesis: every operation gets malformed path ids, query
values and bodies. Never a 500, every error is the API's error body, and a world is unchanged
after every rejected request (its world.json and memory files, byte for byte)."""

import hashlib
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fixtures import shot

pytestmark = pytest.mark.slow

EXAMPLES = 400

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, 1, 2, -1, 1e308, 1e-320, 2**63]),
    st.text(max_size=12), st.sampled_from(["NaN", "Infinity", "../token", "latest", "", "0"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
numeric_lists = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=0, max_size=5),
    st.lists(st.lists(st.floats(-10, 10), min_size=3, max_size=4), min_size=0, max_size=4),
    st.lists(st.lists(st.lists(st.floats(-2, 2), min_size=4, max_size=4), min_size=4, max_size=4), max_size=2),
    st.lists(st.integers(min_value=-5, max_value=2**64), max_size=5),
)
id_text = st.one_of(
    st.text(alphabet="abcdefghij0123456789-./%~_", min_size=1, max_size=70),
    st.sampled_from(["..", "../../token", "%2e%2e", "w-000000000000", "latest", "j-000000000000", "a" * 65]),
)


def digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.name == "world.json" or path.parent.name == "memory"):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def surface(server, client, world):
    job = client.wait(client.submit_job(world["id"], shot(12, first_round=12))["id"])
    assert job["status"] == "succeeded"
    schema = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    operations = [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    return {"world": world["id"], "job": job["id"], "schema": schema, "operations": operations}


def body_properties(schema: dict, op: dict) -> list[str]:
    content = op.get("requestBody", {}).get("content", {})
    for media in ("application/json", "multipart/form-data"):
        ref = content.get(media, {}).get("schema", {}).get("$ref")
        if ref:
            return list(schema["components"]["schemas"][ref.split("/")[-1]].get("properties", {}))
    return []


@st.composite
def requests_for(draw, surface):
    method, path, op = surface["operations"][draw(st.integers(0, len(surface["operations"]) - 1))]
    params = {}
    for parameter in op.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            known = {"world_id": surface["world"], "job_id": surface["job"], "version": "1", "path": "video.mp4"}
            use_known = name in known and method != "delete" and draw(st.booleans())
            value = known[name] if use_known else draw(id_text)
            path = path.replace("{" + name + "}", requests.utils.quote(str(value), safe="/" if name == "path" else ""))
        elif where == "query" and draw(st.booleans()):
            params[name] = draw(st.one_of(st.text(max_size=10), st.integers(-3, 10**20).map(str)))
    kwargs = {"params": params}
    names = body_properties(surface["schema"], op)
    content = op.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        fields = {name: draw(st.one_of(st.text(max_size=20), st.integers(-5, 10**6).map(str)))
                  for name in names if name not in ("image", "depth", "mask", "points") and draw(st.booleans())}
        files = {name: (name, draw(st.binary(max_size=64)))
                 for name in ("image", "depth", "mask", "points") if draw(st.booleans())}
        kwargs.update(data=fields, files=files or None)
    elif "application/json" in content:
        if draw(st.integers(0, 9)) == 0:
            kwargs.update(data=draw(st.binary(max_size=40)), headers={"Content-Type": "application/json"})
        else:
            body = {name: draw(st.one_of(json_values, numeric_lists)) for name in names if draw(st.booleans())}
            if draw(st.integers(0, 4)) == 0:
                body[draw(st.text(min_size=1, max_size=6))] = draw(scalars)
            kwargs["json"] = body if draw(st.integers(0, 9)) else draw(json_values)
    elif "application/octet-stream" in content:
        kwargs["data"] = draw(st.binary(max_size=200))
    return method.upper(), path, kwargs


def test_fuzz_the_api_surface(server, surface):
    world_dir = server.data_dir / "worlds" / surface["world"]
    state = {"digest": digest(world_dir), "requests": 0}
    session = requests.Session()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def run(data):
        method, path, kwargs = data.draw(requests_for(surface))
        response = session.request(method, server.url + path, timeout=30, stream=True, **kwargs)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            response.close()  # a live stream (the dashboard's) never ends by itself: its status is the answer
        state["requests"] += 1
        assert response.status_code < 500, (method, path, kwargs, response.text[:500])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
            assert digest(world_dir) == state["digest"], (method, path, kwargs, response.text)
        else:
            state["digest"] = digest(world_dir)  # an accepted request may change the world

    run()
    assert state["requests"] == EXAMPLES
    assert (world_dir / "world.json").is_file()
    json.loads((world_dir / "world.json").read_text())


def leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, prefix + (key,))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaf_paths(item, prefix + (index,))
    else:
        yield prefix


def replaced(value, path, new):
    if not path:
        return new
    value = json.loads(json.dumps(value))
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return value


# Values at the edges of every type: overflow, float32 limits, empty containers, wrong kinds.
EDGE_VALUES = [2**63 - 1, 2**63, -2**63 - 1, -1, 0, 1, 256, 1e-12, -1e-12, 3.0677e38, 3.5e38, 1e39, -1e308,
               1e308, None, True, "1", "", [], [[]], {}, [1.0] * 5]


def body_templates(world_id: str, other: str, version: int) -> list[tuple[str, dict]]:
    """One valid body per POST operation; jobs land on `other` so `world_id` only sees queries and edits."""
    from service_fixtures import HEIGHT, INTRINSICS, WIDTH

    camera = {"width": WIDTH, "height": HEIGHT, "intrinsics": [INTRINSICS],
              "w2c": [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]]}
    return [
        (f"/v1/worlds/{world_id}/memory/edits", {"parent": version, "delete_ids": [0, 1], "move_ids": [2],
                                                  "move_xyz": [[0, 0, 1]], "add_xyz": [[0, 0, 1]],
                                                  "add_rgb": [[1, 2, 3]]}),
        (f"/v1/worlds/{world_id}/memory/revert", {"version": 1}),
        (f"/v1/worlds/{world_id}/query/render", {"cameras": camera, "version": None}),
        (f"/v1/worlds/{world_id}/query/coverage", {"cameras": camera}),
        (f"/v1/worlds/{world_id}/query/points-in-box", {"min": [-1, -1, 0], "max": [1, 1, 3], "limit": 10}),
        (f"/v1/worlds/{world_id}/query/raycast", {"origins": [[0, 0, 0]], "directions": [[0, 0, 1]]}),
        ("/v1/jobs", {"world_id": other, "shot": shot(3, first_round=3, round_frames=3, overlap=1)}),
    ]


class Checker:
    """Posts a body; asserts no 500, an error body on a 4xx, and an unchanged world after a rejection."""

    def __init__(self, server, world_id: str):
        self.url, self.world_dir = server.url, server.data_dir / "worlds" / world_id
        self.session, self.digest, self.accepted = requests.Session(), digest(self.world_dir), 0

    def version(self) -> int:
        return json.loads((self.world_dir / "world.json").read_text())["memory_version"]

    def post(self, path: str, body, changed=None) -> None:
        response = self.session.post(self.url + path, json=body, timeout=30)
        assert response.status_code < 500, (path, changed, response.text[:300], body)
        if response.status_code >= 400:
            assert response.json()["error"]["message"]
            assert digest(self.world_dir) == self.digest, (path, changed, response.text[:300], body)
        else:
            self.accepted += 1
            self.digest = digest(self.world_dir)


@pytest.fixture
def other_world(client, surface):
    from service_fixtures import HEIGHT, WIDTH

    other = client.create_world("other", "points", WIDTH, HEIGHT, points=client.get_memory(surface["world"], 1))["id"]
    yield other
    for job in client.list_jobs(other):  # anything a test managed to queue is stopped
        client.cancel_job(job["id"])


def test_every_field_takes_every_edge_value(server, surface, other_world):
    """Deterministic sweep: each leaf of each valid body replaced by each edge value."""
    checker = Checker(server, surface["world"])
    posted = 0
    for index in range(len(body_templates(surface["world"], other_world, 1))):
        path, body = body_templates(surface["world"], other_world, checker.version())[index]
        leaves = list(leaf_paths(body))
        if path == "/v1/jobs":  # one camera's fields stand for all frames
            leaves = [leaf for leaf in leaves if leaf[:2] != ("shot", "frames") or leaf[2] == 0]
        for leaf in leaves:
            for value in EDGE_VALUES:
                path, body = body_templates(surface["world"], other_world, checker.version())[index]
                checker.post(path, replaced(body, leaf, value), changed=(leaf, value))
                posted += 1
    assert posted > 1000 and 0 < checker.accepted < posted


def test_fuzz_nearly_valid_bodies(server, surface, other_world):
    """Valid bodies with one value replaced: the checks behind the schema (ids, shapes, ranges)."""
    checker = Checker(server, surface["world"])
    replacements = st.one_of(scalars, numeric_lists, st.sampled_from(EDGE_VALUES))

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def run(data):
        path, body = data.draw(st.sampled_from(body_templates(surface["world"], other_world, checker.version())))
        leaf, value = data.draw(st.sampled_from(list(leaf_paths(body)))), data.draw(replacements)
        checker.post(path, replaced(body, leaf, value), changed=(leaf, value))

    run()
