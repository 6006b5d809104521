"""The `slow` marker (pytest.ini) and conftest's lists of slow fixtures and tests name what exists,
so that a renamed test or fixture does not silently join the fast path (`-m "not slow"`)."""
import configparser
import pathlib

import conftest

TESTS = pathlib.Path(__file__).resolve().parent


def test_slow_is_a_registered_marker():
  config = configparser.ConfigParser()
  config.read(TESTS.parent / "pytest.ini")
  assert config["pytest"]["markers"].strip().startswith("slow:")


def test_every_listed_slow_test_and_fixture_exists():
  sources = {path.name: path.read_text(encoding="utf-8") for path in TESTS.glob("*.py")}
  for entry in conftest.SLOW_TESTS:
    file, name = entry.split("::")
    assert f"def {name}(" in sources.get(file, ""), f"conftest.SLOW_TESTS: no {entry}"
  for fixture in conftest.TRAINING_FIXTURES:
    assert any(f"def {fixture}(" in text for text in sources.values()), (
        f"conftest.TRAINING_FIXTURES: no fixture {fixture}")
