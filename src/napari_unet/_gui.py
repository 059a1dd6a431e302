"""Open napari with the plugin's dock widgets and its sample data (the README's main job)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="napari-unet gui", description=__doc__)
    parser.add_argument("--sample", default="touching_cells", choices=["touching_cells", "nuclei", "none"],
                        help="sample data to open (default: touching_cells)")
    parser.add_argument("--screenshot", default=None, help="save a screenshot of the window to this PNG and quit")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari-unet")
    viewer.window.resize(1500, 950)
    if args.sample != "none":
        viewer.open_sample("napari-scribble-unet", args.sample)
    docks = {}
    for name in ("Annotate", "Train", "Predict", "Batch predict"):
        docks[name], _ = viewer.window.add_plugin_dock_widget("napari-scribble-unet", name, tabify=name != "Annotate")
    docks["Train"].raise_()
    if args.screenshot:
        from qtpy.QtCore import QTimer

        def shoot():
            viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
            viewer.close()

        QTimer.singleShot(1500, shoot)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
