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
                "• Send a photo or an album (with a question in the caption) and I'll look at it; "
                "follow-up questions about it work too.\n"
                "• Send a voice note and I'll answer it — by voice, if you like.\n"
                "• In groups I answer when mentioned (@{bot}), when you reply to my message, "
                "or to a command.\n\n"
                "<b>Commands</b>\n"
                "/model — choose a model (or /model &lt;id&gt;)\n"
                "/new — new conversation\n"
                "/image &lt;prompt&gt; — draw a picture (/image 16:9 … for wide)\n"
                "/video &lt;prompt&gt; — make a short video (or a photo captioned /video …)\n"
                "/settings — persona, temperature, vision and image models, voice, reply mode\n"
                "/usage — what you have spent; /balance — the account's balance\n"
                "/lang — interface language\n"
                "/help — this help"
            ),
            "ru": (
                "<b>Что я умею</b>\n"
                "• Отвечаю на любое сообщение, показывая текст по мере написания; "
                "кнопка «Стоп» прерывает ответ.\n"
                "• Помню диалог (сколько вмещает контекст модели); /new — начать заново.\n"
                "• Пришлите фото или альбом (с вопросом в подписи) — я его рассмотрю; "
                "уточняющие вопросы тоже работают.\n"
                "• Пришлите голосовое — отвечу, если хотите, тоже голосом.\n"
                "• В группах отвечаю, когда меня упоминают (@{bot}), отвечают на моё "
                "сообщение или вызывают команду.\n\n"
                "<b>Команды</b>\n"
                "/model — выбрать модель (или /model &lt;id&gt;)\n"
                "/new — новый диалог\n"
                "/image &lt;запрос&gt; — нарисовать картинку (/image 16:9 … — широкую)\n"
                "/video &lt;запрос&gt; — короткое видео (или фото с подписью /video …)\n"
                "/settings — персона, температура, модели зрения и картинок, голос, формат ответа\n"
                "/usage — ваш расход; /balance — баланс аккаунта\n"
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
        # Before the first answer replayed after a crash or a restart, once per chat.
        "restart_note": {
            "en": "🔄 The bot has restarted and is answering again.",
            "ru": "🔄 Бот перезапустился и снова отвечает.",
        },
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
        "err_not_offered": {
            "en": "ℹ️ The provider of <code>{model}</code> does not offer this.",
            "ru": "ℹ️ Провайдер модели <code>{model}</code> этого не предлагает.",
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
        # --- media -----------------------------------------------------------
        "cmd_image": {"en": "Generate an image", "ru": "Сгенерировать картинку"},
        "cmd_video": {"en": "Generate a video", "ru": "Сгенерировать видео"},
        "model_providers_title": {
            "en": "Choose a provider (current model: <code>{model}</code>).",
            "ru": "Выберите провайдера (текущая модель: <code>{model}</code>).",
        },
        "models_unavailable": {
            "en": "⚠️ Models of {provider} are unavailable now.",
            "ru": "⚠️ Модели {provider} сейчас недоступны.",
        },
        "btn_providers": {"en": "« Providers", "ru": "« Провайдеры"},
        "model_matches": {
            "en": "Several models match <code>{query}</code>. Choose one:",
            "ru": "Под <code>{query}</code> подходят несколько моделей. Выберите одну:",
        },
        "model_matches_more": {
            "en": "…and {count} more: be more precise.",
            "ru": "…и ещё {count}: уточните запрос.",
        },
        "cmd_balance": {"en": "Account balance", "ru": "Баланс аккаунта"},
        "cmd_usage": {"en": "My usage", "ru": "Мой расход"},
        "voice_needs_provider": {
            "en": "🎙 Voice notes need a speech provider, and none is configured here. "
            "Please type your question.",
            "ru": "🎙 Для голосовых сообщений нужен провайдер распознавания речи, а здесь он "
            "не настроен. Напишите вопрос текстом.",
        },
        "refused": {
            "en": "🙅 The model declined to discuss this topic. Try asking differently, or "
            "choose another model with /model.",
            "ru": "🙅 Модель отказалась обсуждать эту тему. Попробуйте спросить иначе или "
            "выберите другую модель: /model.",
        },
        "truncated_mark": {
            "en": "The answer was cut at the length limit.",
            "ru": "Ответ обрезан по ограничению длины.",
        },
        "temperature_dropped": {
            "en": "ℹ️ This model does not take a temperature setting, so it answers with its own.",
            "ru": "ℹ️ Эта модель не принимает настройку температуры и отвечает со своей.",
        },
        "model_replaced": {
            "en": "ℹ️ Your model <code>{model}</code> is no longer available here, so the "
            "default answers. Choose another with /model.",
            "ru": "ℹ️ Ваша модель <code>{model}</code> здесь больше недоступна, поэтому отвечает "
            "модель по умолчанию. Выберите другую: /model.",
        },
        "describe_image": {
            "en": "Describe this image.",
            "ru": "Опиши это изображение.",
        },
        "describe_images": {
            "en": "Describe these images.",
            "ru": "Опиши эти изображения.",
        },
        "file_too_big": {
            "en": "📦 This file is larger than 20 MB, the most a bot can download. "
            "Send a smaller one.",
            "ru": "📦 Файл больше 20 МБ — столько бот скачать не может. Пришлите файл поменьше.",
        },
        "image_unsupported": {
            "en": "🖼 I can't read this image format. Send a JPEG, PNG, WEBP or GIF.",
            "ru": "🖼 Не могу прочитать этот формат. Пришлите JPEG, PNG, WEBP или GIF.",
        },
        "image_corrupt": {
            "en": "🖼 This image seems damaged; I couldn't open it.",
            "ru": "🖼 Изображение повреждено — не получилось его открыть.",
        },
        "image_too_big": {
            "en": "🖼 This image is too large to process. Send a smaller one.",
            "ru": "🖼 Изображение слишком большое. Пришлите поменьше.",
        },
        "transcript": {"en": "🎙 <i>{text}</i>", "ru": "🎙 <i>{text}</i>"},
        "audio_empty": {
            "en": "🎙 The recording is empty.",
            "ru": "🎙 Запись пустая.",
        },
        "audio_silent": {
            "en": "🎙 I couldn't hear any words in this recording.",
            "ru": "🎙 Не удалось разобрать слова в этой записи.",
        },
        "audio_corrupt": {
            "en": "🎙 I couldn't read this audio file. Try recording it again.",
            "ru": "🎙 Не получилось прочитать аудиофайл. Попробуйте записать ещё раз.",
        },
        "audio_too_long": {
            "en": "🎙 The recording is too long (the limit is {minutes} min).",
            "ru": "🎙 Запись слишком длинная (предел — {minutes} мин).",
        },
        "voice_failed": {
            "en": "🔇 I couldn't voice the answer, so here it is as text.",
            "ru": "🔇 Не получилось озвучить ответ, вот он текстом.",
        },
        "image_usage": {
            "en": "Usage: <code>/image a red fox in the snow</code>\nAspect ratio: "
            "<code>/image 16:9 …</code> (1:1, 16:9, 9:16).",
            "ru": "Например: <code>/image рыжая лиса на снегу</code>\nФормат: "
            "<code>/image 16:9 …</code> (1:1, 16:9, 9:16).",
        },
        "image_bad_aspect": {
            "en": "Unsupported aspect ratio {aspect}. Use 1:1, 16:9 or 9:16.",
            "ru": "Формат {aspect} не поддерживается. Доступны 1:1, 16:9 и 9:16.",
        },
        "image_refused": {
            "en": "🙅 The image model refused this prompt. Rephrase it and try again.",
            "ru": "🙅 Модель отказалась рисовать по этому запросу. Переформулируйте его.",
        },
        "image_model_off": {
            "en": "🚫 The image model <code>{model}</code> is not available. "
            "Choose another in /settings.",
            "ru": "🚫 Модель <code>{model}</code> недоступна. Выберите другую в /settings.",
        },
        "video_usage": {
            "en": "Usage: <code>/video a cat surfing a wave</code>, or send a photo with the "
            "caption <code>/video what should happen</code>.",
            "ru": "Например: <code>/video кот катается на волне</code>, или пришлите фото с "
            "подписью <code>/video что должно произойти</code>.",
        },
        "video_queued": {
            "en": "🎬 Video request accepted. Waiting in the queue… ({elapsed})",
            "ru": "🎬 Запрос на видео принят. Ожидание в очереди… ({elapsed})",
        },
        "video_in_progress": {
            "en": "🎬 Generating the video… ({elapsed})",
            "ru": "🎬 Видео генерируется… ({elapsed})",
        },
        "video_done": {"en": "🎬 Your video is ready.", "ru": "🎬 Видео готово."},
        "video_link": {
            "en": "🎬 Your video is ready, but it is too large to send here: {url}",
            "ru": "🎬 Видео готово, но оно слишком большое для отправки сюда: {url}",
        },
        "video_failed": {
            "en": "🎬 The video could not be generated: {reason}",
            "ru": "🎬 Не удалось сгенерировать видео: {reason}",
        },
        "video_timeout": {
            "en": "🎬 The video took too long and was abandoned. Please try again.",
            "ru": "🎬 Видео генерировалось слишком долго, запрос отменён. Попробуйте ещё раз.",
        },
        "video_too_many": {
            "en": "🎬 You already have {limit} videos in progress. Wait for one to finish.",
            "ru": "🎬 У вас уже генерируется {limit} видео. Дождитесь завершения.",
        },
        # Pictures from a task API (MashaGPT) are made as jobs, like videos.
        "image_queued": {
            "en": "🎨 Picture request accepted. Waiting in the queue… ({elapsed})",
            "ru": "🎨 Запрос на картинку принят. Ожидание в очереди… ({elapsed})",
        },
        "image_in_progress": {
            "en": "🎨 Drawing the picture… ({elapsed})",
            "ru": "🎨 Картинка рисуется… ({elapsed})",
        },
        "image_done": {"en": "🎨 Your picture is ready.", "ru": "🎨 Картинка готова."},
        "image_link": {
            "en": "🎨 Your picture is ready, but it could not be sent here: {url}",
            "ru": "🎨 Картинка готова, но отправить её сюда не удалось: {url}",
        },
        "image_failed": {
            "en": "🎨 The picture could not be drawn: {reason}",
            "ru": "🎨 Не удалось нарисовать картинку: {reason}",
        },
        "image_timeout": {
            "en": "🎨 The picture took too long and was abandoned. Please try again.",
            "ru": "🎨 Картинка рисовалась слишком долго, запрос отменён. Попробуйте ещё раз.",
        },
        "image_too_many": {
            "en": "🎨 You already have {limit} pictures or videos in progress. Wait for one "
            "to finish.",
            "ru": "🎨 У вас уже в работе {limit} картинок или видео. Дождитесь завершения.",
        },
        "unknown_reason": {"en": "no reason given", "ru": "причина не указана"},
        # /balance: one block per provider that offers a balance, titled with its name.
        "balance": {
            "en": "💰 <b>{title}</b>\nBalance: {credits} credits\n"
            "Subscription: {subscription}{until}\nStatus: {status_icon} {status_text}",
            "ru": "💰 <b>{title}</b>\nБаланс: {credits} кредитов\n"
            "Подписка: {subscription}{until}\nСтатус: {status_icon} {status_text}",
        },
        "balance_until": {"en": " until {date}", "ru": " до {date}"},
        "balance_tokens": {
            "en": "💰 <b>{title}</b>\nTokens left:\n{lines}",
            "ru": "💰 <b>{title}</b>\nОсталось токенов:\n{lines}",
        },
        "balance_tokens_line": {"en": "• {model}: {tokens}", "ru": "• {model}: {tokens}"},
        "balance_tokens_empty": {
            "en": "💰 <b>{title}</b>\nNo prepaid tokens left.",
            "ru": "💰 <b>{title}</b>\nПредоплаченных токенов нет.",
        },
        "balance_unavailable": {
            "en": "💰 <b>{title}</b>: the balance is not available: {reason}",
            "ru": "💰 <b>{title}</b>: баланс недоступен: {reason}",
        },
        "balance_not_offered": {
            "en": "not offered by this provider",
            "ru": "этот провайдер его не предоставляет",
        },
        "balance_pay_as_you_go": {
            "en": "pay-as-you-go account: no prepaid balance",
            "ru": "аккаунт с оплатой по факту: предоплаченного баланса нет",
        },
        "balance_try_later": {"en": "try again later", "ru": "попробуйте позже"},
        "balance_none": {
            "en": "💰 None of the bot's AI providers reports an account balance.",
            "ru": "💰 Ни один из ИИ-провайдеров бота не сообщает баланс аккаунта.",
        },
        "cmd_stats": {"en": "Bot statistics (admins)", "ru": "Статистика бота (админы)"},
        "cmd_broadcast": {
            "en": "Message every user (admins)",
            "ru": "Рассылка всем пользователям (админы)",
        },
        "private_only": {
            "en": "This command works in a private chat with the bot.",
            "ru": "Эта команда работает в личном чате с ботом.",
        },
        "stats": {
            "en": (
                "📊 <b>Statistics</b>\n"
                "👥 Users: {users} (blocked the bot: {blocked})\n"
                "🆕 New: {new_day} in 24 h · {new_week} in 7 days\n"
                "🔥 Active (24 h / 7 d / 30 d): {active_day} / {active_week} / {active_month}\n"
                "💬 Requests (24 h / 7 d / 30 d): {requests_day} / {requests_week} / "
                "{requests_month}\n"
                "🪙 Last 30 days: {tokens} tokens, {credits} credits\n"
                "{models}"
                "⏱ Running for {uptime}"
                "{broadcast}"
            ),
            "ru": (
                "📊 <b>Статистика</b>\n"
                "👥 Пользователей: {users} (заблокировали бота: {blocked})\n"
                "🆕 Новых: {new_day} за 24 ч · {new_week} за 7 дней\n"
                "🔥 Активных (24 ч / 7 д / 30 д): {active_day} / {active_week} / {active_month}\n"
                "💬 Запросов (24 ч / 7 д / 30 д): {requests_day} / {requests_week} / "
                "{requests_month}\n"
                "🪙 За 30 дней: {tokens} токенов, {credits} кредитов\n"
                "{models}"
                "⏱ Работает {uptime}"
                "{broadcast}"
            ),
        },
        "stats_models": {
            "en": "🏆 Top models, 30 days:\n{lines}\n",
            "ru": "🏆 Популярные модели за 30 дней:\n{lines}\n",
        },
        "stats_broadcast": {
            "en": "\n📣 Broadcast #{id} in progress: {done} of {total}",
            "ru": "\n📣 Идёт рассылка №{id}: {done} из {total}",
        },
        "duration_hm": {"en": "{hours} h {minutes} min", "ru": "{hours} ч {minutes} мин"},
        "duration_m": {"en": "{minutes} min", "ru": "{minutes} мин"},
        "duration_s": {"en": "{seconds} s", "ru": "{seconds} с"},
        "broadcast_ask": {
            "en": (
                "📣 Send me the message for all {count} users. It is copied as it is: text, "
                "photo, video, voice, file, with its formatting and buttons.\n/cancel to cancel."
            ),
            "ru": (
                "📣 Пришлите сообщение для всех пользователей ({count}). Оно будет скопировано "
                "как есть: текст, фото, видео, голосовое, файл — с оформлением и кнопками.\n"
                "/cancel — отменить."
            ),
        },
        "broadcast_confirm": {
            "en": "Send this message to {count} users? It takes about {duration}.",
            "ru": "Отправить это сообщение {count} пользователям? Это займёт около {duration}.",
        },
        "broadcast_no_albums": {
            "en": "An album can't be broadcast as one message: send one photo or video.",
            "ru": "Альбом нельзя разослать одним сообщением: пришлите одно фото или видео.",
        },
        "broadcast_nobody": {
            "en": "There is nobody to send it to yet.",
            "ru": "Пока некому отправлять.",
        },
        "broadcast_busy": {
            "en": "Broadcast #{id} is still running; stop it or wait for it to finish.",
            "ru": "Рассылка №{id} ещё идёт: остановите её или дождитесь конца.",
        },
        "broadcast_send_button": {"en": "✅ Send", "ru": "✅ Отправить"},
        "broadcast_cancel_button": {"en": "✖️ Cancel", "ru": "✖️ Отмена"},
        "broadcast_stop_button": {"en": "⏹ Stop", "ru": "⏹ Остановить"},
        "broadcast_stopping": {"en": "Stopping…", "ru": "Останавливаю…"},
        "broadcast_not_running": {
            "en": "This broadcast is not running.",
            "ru": "Эта рассылка уже не идёт.",
        },
        "broadcast_progress": {
            "en": (
                "📣 Broadcast #{id}: {done} of {total} ({percent}%)\n"
                "✅ delivered {delivered} · 🚫 blocked the bot {blocked} · ⚠️ failed {failed}\n"
                "⏱ about {eta} left"
            ),
            "ru": (
                "📣 Рассылка №{id}: {done} из {total} ({percent}%)\n"
                "✅ доставлено {delivered} · 🚫 заблокировали бота {blocked} · "
                "⚠️ ошибок {failed}\n"
                "⏱ осталось около {eta}"
            ),
        },
        "broadcast_finished": {
            "en": (
                "{icon} Broadcast #{id} {outcome} ({duration}).\n"
                "✅ delivered {delivered} · 🚫 blocked the bot {blocked} · ⚠️ failed {failed}"
                "{reason}"
            ),
            "ru": (
                "{icon} Рассылка №{id} {outcome} ({duration}).\n"
                "✅ доставлено {delivered} · 🚫 заблокировали бота {blocked} · "
                "⚠️ ошибок {failed}{reason}"
            ),
        },
        "broadcast_done": {"en": "finished", "ru": "завершена"},
        "broadcast_stopped": {"en": "stopped", "ru": "остановлена"},
        "broadcast_failed": {"en": "broke off", "ru": "прервана"},
        "broadcast_source_gone": {
            "en": "\n❗ The message being sent was deleted, so nobody else can receive it.",
            "ru": "\n❗ Рассылаемое сообщение удалено, поэтому остальные его не получат.",
        },
        "admins_only": {
            "en": "This command is for the bot's admins.",
            "ru": "Эта команда только для администраторов бота.",
        },
        # /usage: the overall lines, then one block per provider (when there are several);
        # {today}/{total} are "usage_requests, usage_tokens[, usage_credits][, usage_energy]".
        "usage": {
            "en": "📊 <b>Your usage</b>\nToday: {today}\nTotal: {total}",
            "ru": "📊 <b>Ваш расход</b>\nСегодня: {today}\nВсего: {total}",
        },
        "usage_provider": {
            "en": "<b>{title}</b>\nToday: {today}\nTotal: {total}",
            "ru": "<b>{title}</b>\nСегодня: {today}\nВсего: {total}",
        },
        "usage_primary_provider": {"en": "Main provider", "ru": "Основной провайдер"},
        "usage_requests": {"en": "{count} requests", "ru": "{count} запросов"},
        "usage_tokens": {"en": "{count} tokens", "ru": "{count} токенов"},
        "usage_credits": {"en": "{amount} credits", "ru": "{amount} кредитов"},
        "usage_energy": {"en": "{amount} energy", "ru": "{amount} энергии"},
        "btn_vision_model": {"en": "👁 Vision model", "ru": "👁 Модель зрения"},
        "btn_image_model": {"en": "🎨 Image model", "ru": "🎨 Модель картинок"},
        "btn_voice": {"en": "🗣 Voice", "ru": "🗣 Голос"},
        "btn_reply_mode": {"en": "💬 Reply mode", "ru": "💬 Формат ответа"},
        "reply_mode_text": {"en": "Text", "ru": "Текст"},
        "reply_mode_voice": {"en": "Voice", "ru": "Голос"},
        "reply_mode_both": {"en": "Text + voice", "ru": "Текст + голос"},
        "reply_mode_auto": {
            "en": "Auto (voice to voice)",
            "ru": "Авто (на голос — голосом)",
        },
        "pick_vision_model": {"en": "Choose the vision model:", "ru": "Выберите модель зрения:"},
        "pick_image_model": {"en": "Choose the image model:", "ru": "Выберите модель картинок:"},
        "pick_voice": {"en": "Choose the voice:", "ru": "Выберите голос:"},
        "pick_reply_mode": {
            "en": "How should I answer?",
            "ru": "Как отвечать?",
        },
        "no_models_of_kind": {
            "en": "No such models in the current list; the default is used.",
            "ru": "Таких моделей в списке нет; используется модель по умолчанию.",
        },
        "not_text": {
            "en": "I understand text, photos, image files and voice messages. "
            "Send your question as one of those.",
            "ru": "Я понимаю текст, фото, файлы-изображения и голосовые. "
            "Пришлите вопрос в одном из этих видов.",
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
                "Temperature: {temperature}\nLanguage: {lang}\n"
                "Vision model: <code>{vision}</code>\nImage model: <code>{image}</code>\n"
                "Voice: {voice}\nReply mode: {reply_mode}"
            ),
            "ru": (
                "<b>Настройки</b>\nМодель: <code>{model}</code>\nПерсона: {persona}\n"
                "Температура: {temperature}\nЯзык: {lang}\n"
                "Модель зрения: <code>{vision}</code>\nМодель картинок: <code>{image}</code>\n"
                "Голос: {voice}\nФормат ответа: {reply_mode}"
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
        # Delivery: Telegram did not take a message that carried an answer.
        "answer_undelivered": {
            "en": "⚠️ Telegram did not accept my answer, so it could not be delivered. "
            "Please ask again.",
            "ru": "⚠️ Telegram не принял мой ответ, и он не дошёл. Пожалуйста, спросите ещё раз.",
        },
        "answer_partly_delivered": {
            "en": "⚠️ Part of the answer could not be delivered. "
            "Ask me to repeat it if you need it.",
            "ru": "⚠️ Часть ответа не удалось доставить. Попросите повторить, если она нужна.",
        },
        "image_undelivered": {
            "en": "⚠️ The picture is ready, but Telegram did not accept it. Please try again.",
            "ru": "⚠️ Картинка готова, но Telegram её не принял. Попробуйте ещё раз.",
        },
        "video_undelivered": {
            "en": "⚠️ The video is ready, but Telegram did not accept it. Please try again.",
            "ru": "⚠️ Видео готово, но Telegram его не принял. Попробуйте ещё раз.",
        },
        # Callbacks: a forged button, or one whose reply, menu or page no longer exists.
        "button_expired": {
            "en": "This button has expired.",
            "ru": "Эта кнопка устарела.",
        },
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
