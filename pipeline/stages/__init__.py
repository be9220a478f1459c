"""Preprocessing stages (keypoints, silhouettes; parsing and faces to come): backends behind one
contract, run as shards and merged into HDF5 stores aligned to images.h5."""
