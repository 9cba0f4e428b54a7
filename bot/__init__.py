"""sillybot: SillyTavern-grade character roleplay for chat platforms.

The core (`bot`) is platform-neutral: adapters translate platform events into
:class:`bot.types.Inbound` turns and implement :class:`bot.delivery.ports.Surface`.
"""
