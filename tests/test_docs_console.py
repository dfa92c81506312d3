"""The console blocks of README.md and docs/*.md cannot go stale: every `$` command parses against
the current CLI (no stale flag, subcommand or scenario file), and every fast block (no broker,
deterministic) prints today exactly what the docs show, after the normalisations of
tests/docs_console.py. `make docs` rewrites them (tests/docs_run.py)."""

from __future__ import annotations

import pytest
from conftest import free_ports
from docs_console import all_blocks, check_command, keep_lines, normalise
from docs_run import Session, make_scratch

BLOCKS = all_blocks()
FAST = [block for block in BLOCKS if block.fast and block.commands]


def _unused_port() -> int:
    return free_ports(1)[0]


def test_the_docs_have_console_blocks_of_every_kind():
    marks = set().union(*(block.marks for block in BLOCKS))
    assert len(BLOCKS) > 30 and FAST and {"broker", "manual"} <= marks, [b.where for b in BLOCKS]


def test_no_merge_conflict_is_left_in_the_docs():
    import re

    from docs_console import markdown_files
    left = [f"{path.name}:{number}" for path in markdown_files()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.match(r"^(<{7} |>{7} |={7}$)", line)]
    assert not left, "merge conflict markers in the docs: " + ", ".join(left)


def test_every_command_in_the_docs_parses_against_the_cli():
    stale = [f"{block.where}: $ {command.text}\n    {problem}"
             for block in BLOCKS for command in block.commands
             if (problem := check_command(command.text))]
    assert not stale, "commands in the docs that the CLI refuses (fix the doc, then `make docs`):\n" + "\n".join(stale)


def test_the_check_catches_a_stale_flag_subcommand_and_scenario_file():
    assert check_command("python -m bench run scenarios/steady-orders.toml --duration 15") is None
    assert "--check-all" in check_command("python -m bench run scenarios/steady-orders.toml --check-all x")
    assert "invalid choice" in check_command("python -m bench frobnicate")
    assert "no such file" in check_command("python -m bench run scenarios/no-such.toml")
    assert "--no-such" in check_command("locust -f scenarios/orders.py --headless --no-such 1")
    assert "old spelling" in check_command('locust -f scenarios/orders.py --check "p99_delivery_ms<100"')
    assert check_command("cd /tmp && PATH=/x python -m bench broker stop --port 1  # comment") is None
    assert check_command("make docs ALL=1") is None and "no make target" in check_command("make doc")
    assert "no such file" in check_command(".venv/bin/python tests/no_such.py --help")


@pytest.mark.parametrize("block", FAST, ids=[block.where for block in FAST])
def test_a_fast_block_prints_what_the_docs_show(block, tmp_path):
    session = Session(make_scratch(tmp_path / "scratch"), _unused_port(), timeout_s=60)
    for command in block.commands:
        ran = session.run(command, block)
        # Where a keep= block left lines out ("...") may vary (Locust's workers log or do not).
        shown = normalise("\n".join(line for line in command.output if line != "..."))
        printed = normalise("\n".join(line for line in keep_lines(ran.output, block.keep) if line != "..."))
        assert printed == shown, (f"{block.where}: `$ {command.text}` prints something else now; "
                                  f"run `make docs` and review the diff\n--- docs\n{shown}\n--- now\n{printed}")


def test_output_is_written_with_the_shown_port_and_dir_and_compared_without_what_varies(tmp_path):
    from docs_console import rewrite

    printed = f"run x at localhost:29900, 2,000 msg/s; 29,900 sent\nlog: {tmp_path}/.state/broker-29900/server.log  \n"
    assert rewrite(printed, tmp_path, {29900: 9092}) == (
        "run x at localhost:9092, 2,000 msg/s; 29,900 sent\nlog: /tmp/docs/.state/broker-9092/server.log")
    assert rewrite("bootstrap servers: 127.0.0.1:29900,127.0.0.1:29901", None, {29900: 9092, 29901: 9093}) == (
        "bootstrap servers: 127.0.0.1:9092,127.0.0.1:9093")
    assert keep_lines(["a 1", "b", "c", "a 2", "d"], "^a") == ["a 1", "...", "a 2", "..."]
    assert normalise("complete: results/20261202T074415-ci-gate (pid 15331) in 22.5 s") == (
        "complete: results/<stamp>-ci-gate (pid <pid>) in <duration>")
