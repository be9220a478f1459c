"""Preprocessing stages (keypoints, silhouettes, parsing, cloth masks, faces, restored faces): backends
behind one contract, run as shards and merged into HDF5 stores aligned to images.h5."""
