"""The zoo: pretrained models and datasets fetched from registry packages, verified and cached."""
