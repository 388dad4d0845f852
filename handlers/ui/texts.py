"""Every text the bot shows, in Russian and English.

`t(lang, key, **values)` picks the user's language and falls back to English, so
a missing translation shows English rather than a key name.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

_TEXTS: Final = MappingProxyType(
    {
        "start": {
            "en": (
                "👋 Hi, {name}! I'm an AI assistant: ask me anything and I'll answer, "
                "streaming the text as it is written.\n\n"
                "Current model: <code>{model}</code>\n\n"
                "/model — choose a model\n/new — start a new conversation\n"
                "/settings — persona, temperature\n/lang — language\n/help — help"
            ),
            "ru": (
                "👋 Привет, {name}! Я ИИ-ассистент: спросите что угодно — отвечу, "
                "показывая текст по мере написания.\n\n"
                "Текущая модель: <code>{model}</code>\n\n"
                "/model — выбрать модель\n/new — новый диалог\n"
                "/settings — персона, температура\n/lang — язык\n/help — помощь"
            ),
        },
        "help": {
            "en": (
                "<b>What I can do</b>\n"
                "• Answer any message, streaming the text; press Stop to interrupt.\n"
                "• Remember the conversation (as much as the model's context holds); "
                "/new starts over.\n"
                "• In groups I answer when mentioned (@{bot}), when you reply to my message, "
                "or to a command.\n\n"
                "<b>Commands</b>\n"
                "/model — choose a model (or /model &lt;id&gt;)\n"
                "/new — new conversation\n"
                "/settings — persona (system prompt), temperature, reset\n"
                "/lang — interface language\n"
                "/help — this help"
            ),
            "ru": (
                "<b>Что я умею</b>\n"
                "• Отвечаю на любое сообщение, показывая текст по мере написания; "
                "кнопка «Стоп» прерывает ответ.\n"
                "• Помню диалог (сколько вмещает контекст модели); /new — начать заново.\n"
                "• В группах отвечаю, когда меня упоминают (@{bot}), отвечают на моё "
                "сообщение или вызывают команду.\n\n"
                "<b>Команды</b>\n"
                "/model — выбрать модель (или /model &lt;id&gt;)\n"
                "/new — новый диалог\n"
                "/settings — персона (системный промпт), температура, сброс\n"
                "/lang — язык интерфейса\n"
                "/help — эта справка"
            ),
        },
        "cmd_start": {"en": "Start the bot", "ru": "Начать"},
        "cmd_help": {"en": "What the bot can do", "ru": "Что умеет бот"},
        "cmd_new": {"en": "New conversation", "ru": "Новый диалог"},
        "cmd_model": {"en": "Choose a model", "ru": "Выбрать модель"},
        "cmd_settings": {"en": "Persona and temperature", "ru": "Персона и температура"},
        "cmd_lang": {"en": "Language", "ru": "Язык"},
        "new_done": {
            "en": "🆕 New conversation started. Earlier messages will not be sent to the model.",
            "ru": "🆕 Начат новый диалог. Прежние сообщения больше не отправляются модели.",
        },
        "stopped_mark": {"en": "⏹ Stopped", "ru": "⏹ Остановлено"},
        "interrupted_mark": {
            "en": "⚠️ The answer was interrupted by a connection error.",
            "ru": "⚠️ Ответ прерван из-за ошибки соединения.",
        },
        "queue_position": {
            "en": "⏳ Many requests right now — you are #{position} in the queue.",
            "ru": "⏳ Сейчас много запросов — вы {position}-й в очереди.",
        },
        "thinking": {"en": "…", "ru": "…"},
        "stop_button": {"en": "⏹ Stop", "ru": "⏹ Стоп"},
        "stop_not_yours": {
            "en": "Only the person who asked can stop this answer.",
            "ru": "Остановить ответ может только тот, кто задал вопрос.",
        },
        "stop_gone": {"en": "This answer has already finished.", "ru": "Этот ответ уже завершён."},
        "stop_ok": {"en": "Stopping…", "ru": "Останавливаю…"},
        "empty_answer": {
            "en": "The model returned an empty answer. Try rephrasing or another model.",
            "ru": "Модель вернула пустой ответ. Попробуйте переформулировать или сменить модель.",
        },
        "err_context": {
            "en": "📚 The conversation is too long for this model. Send /new to start a fresh one "
            "(or choose a model with a larger context in /model).",
            "ru": "📚 Диалог слишком длинный для этой модели. Отправьте /new, чтобы начать новый "
            "(или выберите модель с большим контекстом в /model).",
        },
        "err_max_tokens": {
            "en": "This model cannot produce answers that long. An admin should lower MAX_TOKENS.",
            "ru": "Эта модель не выдаёт такие длинные ответы. Администратору стоит уменьшить "
            "MAX_TOKENS.",
        },
        "err_auth": {
            "en": "🔑 The bot's API key was rejected by the AI service. The bot's admin has to fix "
            "it.",
            "ru": "🔑 Сервис ИИ не принял ключ API бота. Это должен исправить администратор бота.",
        },
        "err_funds": {
            "en": "💳 The bot's AI account has run out of funds. Please tell the bot's admin.",
            "ru": "💳 На счёте ИИ-сервиса бота закончились средства. Сообщите администратору бота.",
        },
        "err_cost_limit": {
            "en": "💳 This request costs more than the account's per-request limit. Try a cheaper "
            "model (/model) or /new.",
            "ru": "💳 Запрос дороже лимита на один запрос. Выберите модель подешевле (/model) или "
            "начните /new.",
        },
        "err_model": {
            "en": "🚫 The model <code>{model}</code> is not available on the bot's plan. Choose "
            "another one with /model.",
            "ru": "🚫 Модель <code>{model}</code> недоступна на тарифе бота. Выберите другую в "
            "/model.",
        },
        "err_moderation": {
            "en": "🙅 The model refused to answer this request (moderation). Rephrase it or try "
            "another model.",
            "ru": "🙅 Модель отказалась отвечать на этот запрос (модерация). Переформулируйте или "
            "выберите другую модель.",
        },
        "err_rate": {
            "en": "🐢 The AI service is busy right now. Please try again in a minute.",
            "ru": "🐢 Сервис ИИ сейчас перегружен. Попробуйте через минуту.",
        },
        "err_unavailable": {
            "en": "🛠 The AI service is temporarily unavailable. Please try again later.",
            "ru": "🛠 Сервис ИИ временно недоступен. Попробуйте позже.",
        },
        "err_bad_request": {
            "en": "The AI service could not process this request.",
            "ru": "Сервис ИИ не смог обработать этот запрос.",
        },
        "err_unexpected": {
            "en": "Something went wrong on my side. Please try again.",
            "ru": "Что-то пошло не так с моей стороны. Попробуйте ещё раз.",
        },
        "admin_detail": {"en": "Upstream said: {detail}", "ru": "Ответ сервиса: {detail}"},
        "unknown_command": {
            "en": "I don't know this command. Send /help to see what I can do.",
            "ru": "Такой команды нет. Отправьте /help, чтобы увидеть, что я умею.",
        },
        "not_text": {
            "en": "I can read text messages for now. Send your question as text.",
            "ru": "Пока я понимаю только текст. Отправьте вопрос текстом.",
        },
        "model_title": {
            "en": "Choose a model (current: <code>{model}</code>). Page {page}/{pages}.",
            "ru": "Выберите модель (текущая: <code>{model}</code>). Страница {page}/{pages}.",
        },
        "model_list_empty": {
            "en": "The model list is not available right now. You can still set one directly: "
            "/model &lt;id&gt;.",
            "ru": "Список моделей сейчас недоступен. Модель можно задать напрямую: "
            "/model &lt;id&gt;.",
        },
        "model_set": {
            "en": "✅ Model set: <code>{model}</code>",
            "ru": "✅ Модель выбрана: <code>{model}</code>",
        },
        "model_unknown": {
            "en": "There is no chat model <code>{model}</code>. Send /model to see the list.",
            "ru": "Нет чат-модели <code>{model}</code>. Отправьте /model, чтобы увидеть список.",
        },
        "model_gone": {
            "en": "That model is no longer in the list. Send /model again.",
            "ru": "Этой модели больше нет в списке. Отправьте /model ещё раз.",
        },
        "settings_title": {
            "en": (
                "<b>Settings</b>\nModel: <code>{model}</code>\nPersona: {persona}\n"
                "Temperature: {temperature}\nLanguage: {lang}"
            ),
            "ru": (
                "<b>Настройки</b>\nМодель: <code>{model}</code>\nПерсона: {persona}\n"
                "Температура: {temperature}\nЯзык: {lang}"
            ),
        },
        "persona_default": {"en": "default", "ru": "по умолчанию"},
        "temperature_default": {"en": "model default", "ru": "по умолчанию модели"},
        "btn_persona": {"en": "🎭 Persona", "ru": "🎭 Персона"},
        "btn_temperature": {"en": "🌡 Temperature", "ru": "🌡 Температура"},
        "btn_reset": {"en": "♻️ Reset to defaults", "ru": "♻️ Сбросить"},
        "btn_back": {"en": "« Back", "ru": "« Назад"},
        "btn_default": {"en": "Default", "ru": "По умолчанию"},
        "btn_cancel": {"en": "Cancel", "ru": "Отмена"},
        "persona_ask": {
            "en": "Send the persona (system prompt) as one message, e.g. “You are a concise "
            "Python expert”. Send /cancel to keep the current one.",
            "ru": "Отправьте персону (системный промпт) одним сообщением, например «Ты — "
            "лаконичный эксперт по Python». /cancel — оставить текущую.",
        },
        "persona_set": {"en": "✅ Persona saved.", "ru": "✅ Персона сохранена."},
        "persona_cleared": {
            "en": "✅ Persona reset to default.",
            "ru": "✅ Персона сброшена на стандартную.",
        },
        "persona_bad": {
            "en": "Please send the persona as text (up to 4000 characters).",
            "ru": "Отправьте персону текстом (до 4000 символов).",
        },
        "cancelled": {"en": "Cancelled.", "ru": "Отменено."},
        "temperature_ask": {
            "en": "Choose the temperature: lower is more precise, higher is more creative.",
            "ru": "Выберите температуру: ниже — точнее, выше — креативнее.",
        },
        "temperature_set": {
            "en": "✅ Temperature: {temperature}",
            "ru": "✅ Температура: {temperature}",
        },
        "reset_done": {"en": "♻️ Settings reset to defaults.", "ru": "♻️ Настройки сброшены."},
        "lang_ask": {"en": "Choose the language:", "ru": "Выберите язык:"},
        "lang_set": {"en": "✅ Language: English", "ru": "✅ Язык: русский"},
        "lang_auto": {"en": "Auto (from Telegram)", "ru": "Авто (как в Telegram)"},
    }
)

LANG_NAMES: Final = MappingProxyType({"ru": "Русский", "en": "English"})


def t(lang: str, key: str, /, **values: object) -> str:
    variants = _TEXTS[key]
    text = variants.get(lang) or variants["en"]
    return text.format(**values) if values else text


def keys() -> frozenset[str]:
    return frozenset(_TEXTS)


def languages_of(key: str) -> frozenset[str]:
    return frozenset(_TEXTS[key])
