"""The dashboard's FastAPI app: a JSON API over the runs folder, the launcher, the chat engine, and the
static front end (tunesmith/ui/static, no CDN).  Run it with:  tunesmith ui [--runs runs/] [--port 7860]

Every /api call answers JSON; a user mistake (bad recipe, run not stopped) is a 400 whose "error" is the
CLI's own message, an unknown run or comparison a 404. Who may call at all (token, Host, Origin, JSON-only
actions) is access.py's; which recipes may run code, code_guard.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tunesmith.errors import UserError
from tunesmith.runs.record import is_run_folder
from tunesmith.ui import views
from tunesmith.ui.access import Access, add_access_checks
from tunesmith.ui.chat import ChatEngine
from tunesmith.ui.comparisons import comparison_list, comparison_page
from tunesmith.ui.guard import NotFound, run_path
from tunesmith.ui.launch import Launcher, parse_nproc, parse_recipe_text, validate
from tunesmith.ui.serve_chat import ServeEngine

STATIC = Path(__file__).parent / "static"
SHIPPED_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def create_app(runs_dir: Path, *, access: Access | None = None, allow_code: bool = False,
               recipes_dir: Path | None = None, workdir: Path | None = None,
               chat_engine: ChatEngine | None = None) -> FastAPI:
    """The app over `runs_dir`. `access`: who may call (`tunesmith ui` always sets a token; the default, for
    an app built in-process, has none but still answers loopback names only); `allow_code`: launches may run
    recipes that run code; `chat_engine` is the seam for answering through another engine."""
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    recipes_dir = recipes_dir or SHIPPED_RECIPES
    launcher = Launcher(runs_dir, workdir, allow_code=allow_code)
    engine = chat_engine or ServeEngine()
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.launcher = launcher
    add_access_checks(app, access or Access.build("127.0.0.1", None, None))
    _add_errors(app)
    _add_read_routes(app, runs_dir, launcher, recipes_dir)
    _add_action_routes(app, runs_dir, launcher, engine)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_errors(app: FastAPI) -> None:
    """UserError -> 400 {"error": the CLI's message}; NotFound (no such run or comparison) -> 404."""

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=404 if isinstance(err, NotFound) else 400)


def _run_dir(runs_dir: Path, name: str) -> Path:
    """The run folder `name` inside `runs_dir`; a UserError when the name escapes it, NotFound when no run."""
    path = run_path(runs_dir, name)
    if not is_run_folder(path):
        raise NotFound(f"no run named '{name}' in {runs_dir}")
    return path


def _add_read_routes(app: FastAPI, runs_dir: Path, launcher: Launcher, recipes_dir: Path) -> None:
    """The page, the runs table, one run, its curves, a launch's state, shipped recipes and the schema."""

    def run_dir(name: str) -> Path:
        return _run_dir(runs_dir, name)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Response:  # browsers ask for it whatever the page links
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"runs_dir": str(runs_dir), "runs": views.list_runs(runs_dir, launcher.statuses()),
                "comparisons": comparison_list(runs_dir)}

    @app.get("/api/comparisons/{name}")
    def comparison(name: str) -> dict[str, Any]:
        return comparison_page(runs_dir, name)

    @app.get("/api/runs/{name}")
    def run(name: str) -> dict[str, Any]:
        page = views.read_page(run_dir(name), launcher.status(name))
        return {**page, "launched": (launcher.launch_dir(name) / "recipe.yaml").is_file()}

    @app.get("/api/runs/{name}/metrics")
    def metrics(name: str) -> dict[str, Any]:
        return {"curves": views.curves(run_dir(name))}

    @app.get("/api/launches/{name}")
    def launch_state(name: str) -> dict[str, Any]:
        path = run_path(runs_dir, name)
        return {"name": name, "process": launcher.status(name), "nproc": launcher.nproc(name),
                "log": launcher.log_tail(name),
                "run": views.read_row(path, launcher.status(name)) if is_run_folder(path) else None}

    @app.get("/api/recipes")
    def recipes() -> dict[str, Any]:
        files = sorted(recipes_dir.glob("*.yaml")) if recipes_dir.is_dir() else []
        return {"recipes": [{"name": f.stem, "text": f.read_text()} for f in files]}

    @app.get("/api/schema")
    def schema() -> dict[str, Any]:
        from tunesmith.recipe.spec import Recipe

        return Recipe.model_json_schema()


def _add_action_routes(app: FastAPI, runs_dir: Path, launcher: Launcher, engine: ChatEngine) -> None:
    """Validate, launch, stop, resume, chat."""

    @app.post("/api/validate")
    def check(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        nproc = parse_nproc(body.get("nproc", 1))
        recipe = validate(_raw_recipe(body), runs_dir, nproc, launcher.allow_code)
        return {"ok": True, "name": recipe.name, "advice": recipe.advice(), "nproc": nproc,
                "exists": is_run_folder(runs_dir / recipe.name)}

    @app.post("/api/launch")
    def launch(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return launcher.start(_raw_recipe(body), overwrite=bool(body.get("overwrite")),
                              nproc=parse_nproc(body.get("nproc", 1)))

    @app.post("/api/runs/{name}/stop")
    def stop(name: str) -> dict[str, Any]:
        return launcher.stop(name)

    @app.post("/api/runs/{name}/resume")
    def resume(name: str) -> dict[str, Any]:
        return launcher.resume(name)

    @app.post("/api/runs/{name}/v1/chat/completions")
    def chat(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        max_tokens = body.get("max_tokens", 64)
        if not isinstance(max_tokens, int) or not 0 < max_tokens <= 1024:
            raise UserError("max_tokens: give a whole number from 1 to 1024")
        return engine.complete(_run_dir(runs_dir, name), str(body.get("model", "tuned")), body.get("messages"),
                               max_tokens)


def _raw_recipe(body: dict[str, Any]) -> dict[str, Any]:
    """A recipe sent as YAML text ({"text": ...}, the editor) or as a mapping ({"recipe": {...}}, the form)."""
    if isinstance(body.get("recipe"), dict):
        return body["recipe"]
    if isinstance(body.get("text"), str):
        return parse_recipe_text(body["text"])
    raise UserError("send the recipe as {\"text\": YAML} or {\"recipe\": {...}}")


def serve(runs_dir: Path, host: str, port: int, token: str | None, allowed_hosts: list[str] | None = None,
          allow_code: bool = False) -> None:
    """Run the dashboard until Ctrl-C; runs it launched keep training."""
    import uvicorn

    access, url = start_access(host, port, token, allowed_hosts or [])
    app = create_app(runs_dir, access=access, allow_code=allow_code)
    print(f"tunesmith ui: {url}  (runs: {Path(runs_dir).resolve()})", flush=True)
    print("open that URL: every request needs its token (kept as a cookie once the page is open)", flush=True)
    if allow_code:
        print("--allow-code: runs launched from the page may run code (trust_remote_code, their own rewards)",
              flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def start_access(host: str, port: int, token: str | None, allowed_hosts: list[str]) -> tuple[Access, str]:
    """The access rules of a dashboard bound to `host`:`port` (a fresh token unless `token` is given) and the
    URL the user opens, token included."""
    from urllib.parse import quote

    from tunesmith.ui.guard import resolve_token

    access = Access.build(host, port, resolve_token(token), allowed_hosts)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return access, f"http://{shown}:{port}/?token={quote(access.token or '', safe='')}"
