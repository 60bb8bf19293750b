from tunesmith.cli import app

app()
