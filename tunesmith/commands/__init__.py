"""The verbs of the `tunesmith` command, one module each; thin: parse, call one library function, print.

Nothing in the library imports from here (a test checks it). `tunesmith/cli.py` registers each verb.
"""
