"""
The SSH admin shell of the ECA (twisted.conch): the server (`server`), its
sessions (`session`), its commands (`commands`, from the table shared with
the command line), the center as their API (`center`) and following events
(`follow`).
"""
