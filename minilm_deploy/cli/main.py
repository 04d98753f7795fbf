"""The `minilm` app and its single top-level error handler.

A known error (`MinilmError`) prints one line, `minilm: error: ...`, and exits 2 for bad input or
1 for a run-time failure; `--debug` (or `MINILM_DEBUG=1`) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from minilm_deploy import __version__
from minilm_deploy.cli import bench, distill, eval_cmd, export, finetune, run, serve, zoo
from minilm_deploy.errors import MinilmError

app = typer.Typer(
    name="minilm",
    help=(
        "MiniLM end to end: distill a small student from a teacher, fine-tune it, export it to "
        "ONNX/TensorRT, benchmark it against the teacher and serve it.\n\n"
        "Example: minilm run recipes/quickstart.yaml"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"minilm-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """MiniLM distillation and deployment toolchain."""
    # --debug is read by `main()` from the arguments, before any command runs.


app.command("distill", no_args_is_help=True)(distill.command)
app.command("finetune", no_args_is_help=True)(finetune.command)
app.command("eval", no_args_is_help=True)(eval_cmd.command)
app.command("export", no_args_is_help=True)(export.command)
app.command("bench", no_args_is_help=True)(bench.command)
app.command("serve", no_args_is_help=True)(serve.command)
app.command("run", no_args_is_help=True)(run.command)
app.add_typer(zoo.app, name="zoo")


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("MINILM_DEBUG") == "1"


INTERRUPTED = ("minilm: interrupted; no half-written output is left: run the same command again to resume "
               "(distill and finetune: with --resume)\n")


def raised_during_an_interrupt(exc: BaseException) -> bool:
    """Whether `exc` was raised while a KeyboardInterrupt was being handled (in an `except` or `finally`)."""
    context, seen = exc.__context__, set()
    while context is not None and id(context) not in seen:
        if isinstance(context, KeyboardInterrupt):
            return True
        seen.add(id(context))
        context = context.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (also used by tests in-process).

    Typer runs in standalone mode: it reports usage errors itself (exit 2) and turns Ctrl-C into
    exit 130; our own errors come through here as `MinilmError`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="minilm")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 130:
            sys.stderr.write(INTERRUPTED)
        return code
    except MinilmError as exc:
        if _debug_requested(args):
            raise
        sys.stderr.write(f"minilm: error: {exc}\n")
        return exc.exit_code
    except OSError as exc:  # disk full, permission denied, a file where a folder was expected, …
        if _debug_requested(args):
            raise
        if raised_during_an_interrupt(exc):  # cleanup that Ctrl-C broke: the interrupt is what happened
            sys.stderr.write(INTERRUPTED)
            return 130
        from minilm_deploy.paths import os_error_line

        sys.stderr.write(f"minilm: error: {' '.join(os_error_line(exc).split())}\n")
        return 1
    return 0


def entry() -> None:
    sys.exit(main())
