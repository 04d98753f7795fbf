"""`python -m minilm_deploy.distill RECIPE [options]` = `minilm distill ...`, for torchrun:

    torchrun --nproc_per_node 2 -m minilm_deploy.distill recipes/quickstart.yaml
"""

import sys

from minilm_deploy.cli.main import main

sys.exit(main(["distill", *sys.argv[1:]]))
