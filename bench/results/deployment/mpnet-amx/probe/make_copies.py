"""The pretrained 6- and 8-layer copies of all-mpnet-base-v2 (new picks) for the latency probe: /tmp/probe/mpnet-{6,8}x768."""

import torch
from transformers import AutoModel, AutoTokenizer

from minilm_deploy.models.student import teacher_layer_picks
from minilm_deploy.sources import resolve_model

path = resolve_model("zoo:all-mpnet-base-v2")
for layers in (6, 8):
    model = AutoModel.from_pretrained(path)
    picks = teacher_layer_picks(12, layers)
    model.encoder.layer = torch.nn.ModuleList([model.encoder.layer[i] for i in picks])
    model.config.num_hidden_layers = layers
    out = f"/tmp/probe/mpnet-{layers}x768"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    print(layers, picks)
