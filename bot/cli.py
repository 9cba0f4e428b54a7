"""`sillybot` / `python -m bot`: run, chat, check, models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.app import Service, load_frontend
from bot.backends.base import ModelCatalog
from bot.config import Settings, load_config
from bot.engine.characters import CharacterLibrary
from bot.errors import BotError, ConfigError
from bot.prompt.cards import export_png

_log = logging.getLogger("bot")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sillybot", description=__doc__)
    parser.add_argument("--config", help="config file (default: $SILLYBOT_CONFIG or config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the configured front ends (Discord, Telegram, console)")
    chat = sub.add_parser("chat", help="talk to a character in the terminal")
    chat.add_argument("--character", default="", help="character name from the config")
    chat.add_argument("--backend", default="", help="backend name from the config")
    chat.add_argument("--user", default="", help="your name in the story")
    chat.add_argument("--channel", default="console", help="a name for this conversation")
    sub.add_parser("check", help="validate the config, reach Redis and every backend")
    models = sub.add_parser("models", help="list a backend's models")
    models.add_argument("--backend", default="", help="backend name from the config")
    card = sub.add_parser("card", help="export a character as a SillyTavern PNG card")
    card.add_argument("name", help="character name from the config (or aria)")
    card.add_argument("--out", required=True, help="the PNG file to write")
    usage = sub.add_parser("usage", help="tokens used per backend, model and user")
    usage.add_argument("--platform", default="con", help="dc, tg or con (the console)")
    usage.add_argument("--bot", default="local", help="the bot's id on that platform")
    usage.add_argument("--server", default="", help="a Discord server or Telegram group id")
    args = parser.parse_args(argv)

    try:
        settings = _settings(args)
        # the terminal chat owns the terminal: its log goes to a file (also when `run` has
        # no platform token and opens the terminal chat)
        terminal = args.command == "chat" or (
            args.command == "run" and not (settings.discord_token or settings.telegram_token)
        )
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            filename=str(settings.data_dir / "sillybot.log") if terminal else None,
        )
        # one line per HTTP request is noise on a terminal; the log file keeps warnings
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
        command = {
            "run": _run,
            "chat": _chat,
            "check": _check,
            "models": _models,
            "usage": _usage,
            "card": _card,
        }[args.command]
        return asyncio.run(command(settings, args))
    except BotError as exc:
        print(f"error: {exc.user_message()}", file=sys.stderr)
        return 1
    except OSError as exc:  # a folder or file the service cannot create, read or write
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"environment / .env: {problems}", hint="see .env.example") from None
    if settings.log_level.upper() not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"SILLYBOT_LOG_LEVEL={settings.log_level!r} is not a log level",
            hint="use DEBUG, INFO, WARNING or ERROR",
        )
    if args.config:
        settings = settings.model_copy(update={"config_file": Path(args.config)})
    if (args.config or settings.config_named()) and not settings.config_file.is_file():
        raise ConfigError(f"config file not found: {settings.config_file}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def _frontend_session(settings: Settings, name: str, options: dict[str, str]) -> int:
    service = Service(settings, load_config(settings.config_file))
    frontend = load_frontend(name)(settings, options)  # type: ignore[call-arg]
    try:
        engine = await service.start({frontend.platform: frontend.surfaces()})
        await frontend.run(engine)
    finally:
        await service.close()
    return 0


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    options = {
        "character": args.character,
        "backend": args.backend,
        "user": args.user,
        "channel": args.channel,
    }
    return await _frontend_session(settings, "console", options)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    names = [
        n
        for n, token in (
            ("discord", settings.discord_token),
            ("telegram", settings.telegram_token),
        )
        if token
    ]
    if not names:
        print("No DISCORD_TOKEN or TELEGRAM_TOKEN set: starting the terminal chat instead.")
        return await _chat(
            settings, argparse.Namespace(character="", backend="", user="", channel="console")
        )
    service = Service(settings, load_config(settings.config_file))
    frontends = [load_frontend(n)(settings, {}) for n in names]  # type: ignore[call-arg]
    try:
        engine = await service.start({f.platform: f.surfaces() for f in frontends})
        await asyncio.gather(*(f.run(engine) for f in frontends))
    finally:
        await service.close()
    return 0


async def _check(settings: Settings, args: argparse.Namespace) -> int:
    problems = 0
    config = load_config(settings.config_file)
    where = settings.config_file if settings.config_file.exists() else "built-in defaults"
    print(f"config: ok ({where})")
    service = Service(settings, config)
    try:
        try:
            await service.start_state()
            print("redis: ok (" + ("REDIS_URL" if settings.redis_url else "embedded") + ")")
        except BotError as exc:
            problems += 1
            print(f"redis: FAILED — {exc.user_message()}")
        library = CharacterLibrary(config)
        for name in library.names():
            try:
                print(f"character {name}: ok ({library.get(name).name})")
            except BotError as exc:
                problems += 1
                print(f"character {name}: FAILED — {exc.user_message()}")
        pool = await service.start_backends(allow_local=False)
        try:
            service.validate(pool)
            print("references and prompt files: ok")
        except BotError as exc:
            problems += 1
            print(f"config: FAILED — {exc.user_message()}")
        if not pool.names():
            print("backends: none configured — `chat` and `run` will start the embedded model")
        for name in pool.names():
            try:
                backend, bconf = pool.get(name)
                ids = await _list(backend)
                shown = ", ".join(ids[:8]) + (" …" if len(ids) > 8 else "")
                print(f"backend {name}: ok ({bconf.base_url}) models: {shown or '(not listed)'}")
                if bconf.model and ids and bconf.model not in ids:
                    print(f"  warning: model {bconf.model!r} is not in the list")
            except BotError as exc:
                problems += 1
                print(f"backend {name}: FAILED — {exc.user_message()}")
    finally:
        await service.close()
    print("all good" if not problems else f"{problems} problem(s)")
    return 1 if problems else 0


async def _models(settings: Settings, args: argparse.Namespace) -> int:
    service = Service(settings, load_config(settings.config_file))
    try:
        pool = await service.start_backends(allow_local=False)
        backend, _ = pool.get(args.backend)
        for model in await _list(backend):
            print(model)
    finally:
        await service.close()
    return 0


async def _card(settings: Settings, args: argparse.Namespace) -> int:
    """Write the card as PNG with both `chara` (V2) and `ccv3` (V3) chunks, as ST does."""
    character = CharacterLibrary(load_config(settings.config_file)).get(args.name)
    data = export_png(character, character.avatar)
    await asyncio.to_thread(Path(args.out).write_bytes, data)
    print(f"wrote {args.out} ({character.name})")
    return 0


async def _usage(settings: Settings, args: argparse.Namespace) -> int:
    service = Service(settings, load_config(settings.config_file))
    try:
        store = await service.start_state()
        total = await store.server_usage(args.platform, args.bot, args.server)
        print(total.describe())
    finally:
        await service.close()
    return 0


async def _list(backend: object) -> list[str]:
    if not isinstance(backend, ModelCatalog):
        return []
    return [m.id for m in await backend.list_models()]
