"""Every other command of README.md and of the recipes' headers, run as a user types it (recipes as written).

See tests/journeys/documented.py for how the commands are found and run.
"""

from __future__ import annotations

import pytest

from .documented import COMMANDS, QUICKSTART, run_documented

OTHERS = [(where, command) for where, command in COMMANDS if (where, command) not in QUICKSTART]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), OTHERS, ids=[f"{w}:{c[:70]}" for w, c in OTHERS])
def test_documented_command_runs(where, command, workspace):
    run_documented(where, command, workspace)
