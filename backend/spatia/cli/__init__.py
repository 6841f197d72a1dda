"""`spatia`: the command line (main.py); subcommands import their engine parts only when they run."""


def main(argv=None) -> int:
    from .main import main as run

    return run(argv)
