import pytest
from service_fixtures import HEIGHT, WIDTH, first_view, start_server
from spatia.service.client import SpatiaClient


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One service for the tests that do not restart or reconfigure it; two worker threads."""
    process = start_server(tmp_path_factory.mktemp("service") / "data", "--workers", "2")
    yield process
    process.stop()


@pytest.fixture
def client(server):
    return SpatiaClient(server.url, timeout=30)


@pytest.fixture
def world(client):
    """A fresh world initialised from an RGB + depth view of a textured wall."""
    rgb, depth, camera = first_view()
    return client.create_world("wall", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth, camera=camera)
