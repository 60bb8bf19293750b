"""`tunesmith ui`: a local web dashboard over a runs folder.  Run it with:  tunesmith ui [--runs runs/]

    app.py       the FastAPI app factory: JSON API, static front end, token check
    views.py     run folders as the rows and pages the dashboard shows (read through tunesmith.runs)
    launch.py    validate a recipe, start `python -m tunesmith train` detached, watch, stop, resume
    chat.py      the chat pane's engine (OpenAI chat-completion shape) over a run's weights
    guard.py     loopback-only by default, tokens, paths kept inside the runs folder
    static/      plain HTML/JS/CSS, no CDN: works offline; charts are inline SVG
"""
