"""`tunesmith ui`: a local web dashboard over a runs folder.  Run it with:  tunesmith ui [--runs runs/]

    app.py       the FastAPI app factory: JSON API, static front end
    access.py    who may call: per-start token (cookie or bearer), Host allow-list, same-origin JSON actions
    code_guard.py  launches never run code (trust_remote_code, non-built-in rewards) without --allow-code
    views.py     run folders as the rows and pages the dashboard shows (read through tunesmith.runs)
    launch.py    validate a recipe, start `python -m tunesmith train` detached, watch, stop, resume
    chat.py      the chat pane's engine (OpenAI chat-completion shape) over a run's weights
    guard.py     loopback by default, the token, 404s, paths kept inside the runs folder
    static/      plain HTML/JS/CSS, no CDN: works offline; charts are inline SVG
"""
