import pytest


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """The embedded synthetic city's tiny preset, built once for the whole test session."""
    from data_catalog.synthetic.__main__ import main

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    main(["--preset", "tiny", "--seed", "0", "--out", str(out), "--no_progress"])
    return out
