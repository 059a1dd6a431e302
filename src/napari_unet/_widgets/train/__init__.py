"""The Train widget and its parts: the pairs table, the settings form, the progress view, the loss plot, annotations synced live."""
