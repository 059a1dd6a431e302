"""What every wing shares: axis strings, argument checks, devices and threads, pixel sizes, progress, picture rendering."""
