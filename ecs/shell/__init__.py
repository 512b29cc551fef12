"""The SSH admin shell of the ECA (twisted.conch): the server (`server`), its sessions (`session`) and commands (`commands`)."""
