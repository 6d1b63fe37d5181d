"""Running the `genseq` command in-process, as the console script would."""

from __future__ import annotations

from genseq.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `genseq *argv`, argparse's usage errors included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's usage errors, as the console script would exit
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err
