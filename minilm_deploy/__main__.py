from minilm_deploy.cli.main import entry

entry()
