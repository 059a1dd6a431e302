"""`python -m napari_unet gui | demo | train | predict`."""

import sys


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "gui":
        from ._gui import main as gui

        return gui(argv[1:])
    from .cli.main import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_main())
