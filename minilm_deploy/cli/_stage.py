"""What a command says when its stage has not been built yet."""

from minilm_deploy.errors import MinilmError


def not_built(command: str, issue: int) -> MinilmError:
    return MinilmError(f"`minilm {command}` is not built yet (tracked in issue #{issue}); nothing was done")
