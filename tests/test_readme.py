import re

from launcher.cli import settings_table
from tests.conftest import REPO_ROOT


def test_the_readme_lists_every_setting_with_its_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings:begin[^>]*-->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert block is not None, "the README lost its settings table markers"
    assert block.group(1) == settings_table(), "README settings table is stale: paste `chorus settings` into it"


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in (REPO_ROOT / "README.md").read_text()
    assert re.search(r"^make test$", ci, re.M)
