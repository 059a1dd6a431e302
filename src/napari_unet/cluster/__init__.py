"""Prediction on a dask cluster: the client, blocks and their label merge, batch jobs here or there."""
