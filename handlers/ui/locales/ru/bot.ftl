# Texts of the core bot: start and help, chat and answers, errors, media, settings,
# /balance and /usage, the admins' /stats and /broadcast.
# Message ids are the keys that handlers pass to t() (handlers/ui/texts.py).

start =
    👋 Привет, { $name }! Я ИИ-ассистент: спросите что угодно — отвечу, показывая текст по мере написания.

    Текущая модель: <code>{ $model }</code>

    /model — выбрать модель
    /new — новый диалог
    /settings — персона, температура
    /lang — язык
    /help — помощь

help =
    <b>Что я умею</b>
    • Отвечаю на любое сообщение, показывая текст по мере написания; кнопка «Стоп» прерывает ответ.
    • Помню диалог (сколько вмещает контекст модели); /new — начать заново.
    • Пришлите фото или альбом (с вопросом в подписи) — я его рассмотрю; уточняющие вопросы тоже работают.
    • Пришлите голосовое — отвечу, если хотите, тоже голосом.
    • В группах отвечаю, когда меня упоминают (@{ $bot }), отвечают на моё сообщение или вызывают команду.

    <b>Команды</b>
    /model — выбрать модель (или /model &lt;id&gt;)
    /new — новый диалог
    /image &lt;запрос&gt; — нарисовать картинку (/image 16:9 … — широкую)
    /video &lt;запрос&gt; — короткое видео (или фото с подписью /video …)
    /settings — персона, температура, модели зрения и картинок, голос, формат ответа
    { $usage }
    /lang — язык интерфейса
    /help — эта справка

cmd_start = Начать
cmd_help = Что умеет бот
cmd_new = Новый диалог
cmd_model = Выбрать модель
cmd_settings = Персона и температура
cmd_lang = Язык
new_done = 🆕 Начат новый диалог. Прежние сообщения больше не отправляются модели.
stopped_mark = ⏹ Остановлено
interrupted_mark = ⚠️ Ответ прерван из-за ошибки соединения.
queue_position = ⏳ Сейчас много запросов — вы { $position }-й в очереди.
thinking = …

# Before the first answer replayed after a crash or a restart, once per chat.
restart_note = 🔄 Бот перезапустился и снова отвечает.
stop_button = ⏹ Стоп
stop_not_yours = Остановить ответ может только тот, кто задал вопрос.
stop_gone = Этот ответ уже завершён.
stop_ok = Останавливаю…
empty_answer = Модель вернула пустой ответ. Попробуйте переформулировать или сменить модель.
err_context = 📚 Диалог слишком длинный для этой модели. Отправьте /new, чтобы начать новый (или выберите модель с большим контекстом в /model).
err_max_tokens = Эта модель не выдаёт такие длинные ответы. Администратору стоит уменьшить MAX_TOKENS.
err_auth = 🔑 Сервис ИИ не принял ключ API бота. Это должен исправить администратор бота.
err_funds = 💳 На счёте ИИ-сервиса бота закончились средства. Сообщите администратору бота.
err_cost_limit = 💳 Запрос дороже лимита на один запрос. Выберите модель подешевле (/model) или начните /new.
err_not_offered = ℹ️ Провайдер модели <code>{ $model }</code> этого не предлагает.
err_model = 🚫 Модель <code>{ $model }</code> недоступна на тарифе бота. Выберите другую в /model.
err_moderation = 🙅 Модель отказалась отвечать на этот запрос (модерация). Переформулируйте или выберите другую модель.
err_rate = 🐢 Сервис ИИ сейчас перегружен. Попробуйте через минуту.
err_unavailable = 🛠 Сервис ИИ временно недоступен. Попробуйте позже.
err_bad_request = Сервис ИИ не смог обработать этот запрос.
err_unexpected = Что-то пошло не так с моей стороны. Попробуйте ещё раз.
admin_detail = Ответ сервиса: { $detail }
unknown_command = Такой команды нет. Отправьте /help, чтобы увидеть, что я умею.

# --- media -----------------------------------------------------------
cmd_image = Сгенерировать картинку
cmd_video = Сгенерировать видео
model_providers_title = Выберите провайдера (текущая модель: <code>{ $model }</code>).
models_unavailable = ⚠️ Модели { $provider } сейчас недоступны.
btn_providers = « Провайдеры
model_matches = Под <code>{ $query }</code> подходят несколько моделей. Выберите одну:
model_matches_more = …и ещё { $count }: уточните запрос.
cmd_balance = Баланс аккаунта
cmd_usage = Мой расход
voice_needs_provider = 🎙 Для голосовых сообщений нужен провайдер распознавания речи, а здесь он не настроен. Напишите вопрос текстом.
refused = 🙅 Модель отказалась обсуждать эту тему. Попробуйте спросить иначе или выберите другую модель: /model.
truncated_mark = Ответ обрезан по ограничению длины.
temperature_dropped = ℹ️ Эта модель не принимает настройку температуры и отвечает со своей.
model_replaced = ℹ️ Ваша модель <code>{ $model }</code> здесь больше недоступна, поэтому отвечает модель по умолчанию. Выберите другую: /model.
describe_image = Опиши это изображение.
describe_images = Опиши эти изображения.
file_too_big = 📦 Файл больше 20 МБ — столько бот скачать не может. Пришлите файл поменьше.
image_unsupported = 🖼 Не могу прочитать этот формат. Пришлите JPEG, PNG, WEBP или GIF.
image_corrupt = 🖼 Изображение повреждено — не получилось его открыть.
image_too_big = 🖼 Изображение слишком большое. Пришлите поменьше.
transcript = 🎙 <i>{ $text }</i>
audio_empty = 🎙 Запись пустая.
audio_silent = 🎙 Не удалось разобрать слова в этой записи.
audio_corrupt = 🎙 Не получилось прочитать аудиофайл. Попробуйте записать ещё раз.
audio_too_long = 🎙 Запись слишком длинная (предел — { $minutes } { $minutes ->
        [one] минута
        [few] минуты
       *[many] минут
        [other] минуты
    }).
voice_failed = 🔇 Не получилось озвучить ответ, вот он текстом.

image_usage =
    Например: <code>/image рыжая лиса на снегу</code>
    Формат: <code>/image 16:9 …</code> (1:1, 16:9, 9:16).

image_bad_aspect = Формат { $aspect } не поддерживается. Доступны 1:1, 16:9 и 9:16.
image_refused = 🙅 Модель отказалась рисовать по этому запросу. Переформулируйте его.
image_model_off = 🚫 Модель <code>{ $model }</code> недоступна. Выберите другую в /settings.
video_usage = Например: <code>/video кот катается на волне</code>, или пришлите фото с подписью <code>/video что должно произойти</code>.
video_queued = 🎬 Запрос на видео принят. Ожидание в очереди… ({ $elapsed })
video_in_progress = 🎬 Видео генерируется… ({ $elapsed })
video_done = 🎬 Видео готово.
video_link = 🎬 Видео готово, но оно слишком большое для отправки сюда: { $url }
video_failed = 🎬 Не удалось сгенерировать видео: { $reason }
video_timeout = 🎬 Видео генерировалось слишком долго, запрос отменён. Попробуйте ещё раз.
video_too_many = 🎬 У вас уже { $limit ->
        [one] генерируется
       *[other] генерируются
    } { $limit } видео. Дождитесь завершения.

# Pictures from a task API (MashaGPT) are made as jobs, like videos.
image_queued = 🎨 Запрос на картинку принят. Ожидание в очереди… ({ $elapsed })
image_in_progress = 🎨 Картинка рисуется… ({ $elapsed })
image_done = 🎨 Картинка готова.
image_link = 🎨 Картинка готова, но отправить её сюда не удалось: { $url }
image_failed = 🎨 Не удалось нарисовать картинку: { $reason }
image_timeout = 🎨 Картинка рисовалась слишком долго, запрос отменён. Попробуйте ещё раз.
image_too_many = 🎨 У вас уже в работе { $limit } { $limit ->
        [one] картинка
        [few] картинки
       *[many] картинок
        [other] картинки
    } или видео. Дождитесь завершения.
unknown_reason = причина не указана

# /balance: one block per provider that offers a balance, titled with its name.
balance =
    💰 <b>{ $title }</b>
    Баланс: { $credits } { $credits ->
        [one] кредит
        [few] кредита
       *[many] кредитов
        [other] кредита
    }
    Подписка: { $subscription }{ $until }
    Статус: { $status_icon } { $status_text }

balance_until = {" "}до { $date }

balance_tokens =
    💰 <b>{ $title }</b>
    Осталось токенов:
    { $lines }

balance_tokens_line = • { $model }: { $tokens }

balance_tokens_empty =
    💰 <b>{ $title }</b>
    Предоплаченных токенов нет.

balance_unavailable = 💰 <b>{ $title }</b>: баланс недоступен: { $reason }
balance_not_offered = этот провайдер его не предоставляет
balance_pay_as_you_go = аккаунт с оплатой по факту: предоплаченного баланса нет
balance_try_later = попробуйте позже
balance_none = 💰 Ни один из ИИ-провайдеров бота не сообщает баланс аккаунта.
cmd_stats = Статистика бота (админы)
cmd_broadcast = Рассылка всем пользователям (админы)
private_only = Эта команда работает в личном чате с ботом.

stats =
    📊 <b>Статистика</b>
    👥 Пользователей: { $users } (заблокировали бота: { $blocked })
    🆕 Новых: { $new_day } за 24 ч · { $new_week } за 7 дней
    🔥 Активных (24 ч / 7 д / 30 д): { $active_day } / { $active_week } / { $active_month }
    💬 Запросов (24 ч / 7 д / 30 д): { $requests_day } / { $requests_week } / { $requests_month }
    🪙 За 30 дней: { $tokens } { $tokens ->
        [one] токен
        [few] токена
       *[many] токенов
        [other] токена
    }, { NUMBER($credits, minimumFractionDigits: 2, maximumFractionDigits: 2) } кредита
    { $models }⏱ Работает { $uptime }{ $broadcast }

stats_models =
    🏆 Популярные модели за 30 дней:
    { $lines }
    {""}

stats_broadcast =
    {""}
    📣 Идёт рассылка №{ NUMBER($id, useGrouping: 0) }: { $done } из { $total }

duration_hm = { $hours } ч { $minutes } мин
duration_m = { $minutes } мин
duration_s = { $seconds } с

broadcast_ask =
    📣 Пришлите сообщение для { $count ->
        [one] { $count } пользователя
       *[other] всех пользователей ({ $count })
    }. Оно будет скопировано как есть: текст, фото, видео, голосовое, файл — с оформлением и кнопками.
    /cancel — отменить.

broadcast_confirm = Отправить это сообщение { $count } { $count ->
        [one] пользователю
       *[other] пользователям
    }? Это займёт около { $duration }.
broadcast_no_albums = Альбом нельзя разослать одним сообщением: пришлите одно фото или видео.
broadcast_nobody = Пока некому отправлять.
broadcast_busy = Рассылка №{ NUMBER($id, useGrouping: 0) } ещё идёт: остановите её или дождитесь конца.
broadcast_send_button = ✅ Отправить
broadcast_cancel_button = ✖️ Отмена
broadcast_stop_button = ⏹ Остановить
broadcast_stopping = Останавливаю…
broadcast_not_running = Эта рассылка уже не идёт.

broadcast_progress =
    📣 Рассылка №{ NUMBER($id, useGrouping: 0) }: { $done } из { $total } ({ $percent }%)
    ✅ доставлено { $delivered } · 🚫 заблокировали бота { $blocked } · ⚠️ { $failed } { $failed ->
        [one] ошибка
        [few] ошибки
       *[many] ошибок
        [other] ошибки
    }
    ⏱ осталось около { $eta }

broadcast_finished =
    { $icon } Рассылка №{ NUMBER($id, useGrouping: 0) } { $outcome } ({ $duration }).
    ✅ доставлено { $delivered } · 🚫 заблокировали бота { $blocked } · ⚠️ { $failed } { $failed ->
        [one] ошибка
        [few] ошибки
       *[many] ошибок
        [other] ошибки
    }{ $reason }

broadcast_done = завершена
broadcast_stopped = остановлена
broadcast_failed = прервана

broadcast_source_gone =
    {""}
    ❗ Рассылаемое сообщение удалено, поэтому остальные его не получат.

admins_only = Эта команда только для администраторов бота.

# /usage: the overall lines, then one block per provider (when there are several);
# $today and $total are "usage_requests, usage_tokens[, usage_credits][, usage_energy]".
usage =
    📊 <b>Ваш расход</b>
    Сегодня: { $today }
    Всего: { $total }

usage_provider =
    <b>{ $title }</b>
    Сегодня: { $today }
    Всего: { $total }

usage_primary_provider = Основной провайдер
usage_requests = { $count } { $count ->
        [one] запрос
        [few] запроса
       *[many] запросов
        [other] запроса
    }
usage_tokens = { $count } { $count ->
        [one] токен
        [few] токена
       *[many] токенов
        [other] токена
    }
# Always two decimals, so always the fraction form ("0,50 кредита", "2,00 кредита").
usage_credits = { NUMBER($amount, minimumFractionDigits: 2, maximumFractionDigits: 2) } кредита
usage_energy = { NUMBER($amount, minimumFractionDigits: 2, maximumFractionDigits: 2) } энергии
btn_vision_model = 👁 Модель зрения
btn_image_model = 🎨 Модель картинок
btn_voice = 🗣 Голос
btn_reply_mode = 💬 Формат ответа
reply_mode_text = Текст
reply_mode_voice = Голос
reply_mode_both = Текст + голос
reply_mode_auto = Авто (на голос — голосом)
pick_vision_model = Выберите модель зрения:
pick_image_model = Выберите модель картинок:
pick_voice = Выберите голос:
pick_reply_mode = Как отвечать?
no_models_of_kind = Таких моделей в списке нет; используется модель по умолчанию.
not_text = Я понимаю текст, фото, файлы-изображения и голосовые. Пришлите вопрос в одном из этих видов.
model_title = Выберите модель (текущая: <code>{ $model }</code>). Страница { $page }/{ $pages }.
model_list_empty = Список моделей сейчас недоступен. Модель можно задать напрямую: /model &lt;id&gt;.
model_set = ✅ Модель выбрана: <code>{ $model }</code>
model_unknown = Нет чат-модели <code>{ $model }</code>. Отправьте /model, чтобы увидеть список.
model_gone = Этой модели больше нет в списке. Отправьте /model ещё раз.

settings_title =
    <b>Настройки</b>
    Модель: <code>{ $model }</code>
    Персона: { $persona }
    Температура: { $temperature }
    Язык: { $lang }
    Модель зрения: <code>{ $vision }</code>
    Модель картинок: <code>{ $image }</code>
    Голос: { $voice }
    Формат ответа: { $reply_mode }

persona_default = по умолчанию
temperature_default = по умолчанию модели
btn_persona = 🎭 Персона
btn_temperature = 🌡 Температура
btn_reset = ♻️ Сбросить
btn_back = « Назад
btn_default = По умолчанию
btn_cancel = Отмена
persona_ask = Отправьте персону (системный промпт) одним сообщением, например «Ты — лаконичный эксперт по Python». /cancel — оставить текущую.
persona_set = ✅ Персона сохранена.
persona_cleared = ✅ Персона сброшена на стандартную.
persona_bad = Отправьте персону текстом (до 4000 символов).
cancelled = Отменено.
temperature_ask = Выберите температуру: ниже — точнее, выше — креативнее.
temperature_set = ✅ Температура: { $temperature }
reset_done = ♻️ Настройки сброшены.
lang_ask = Выберите язык:
lang_set = ✅ Язык: русский
lang_auto = Авто (как в Telegram)

# Delivery: Telegram did not take a message that carried an answer.
answer_undelivered = ⚠️ Telegram не принял мой ответ, и он не дошёл. Пожалуйста, спросите ещё раз.
answer_partly_delivered = ⚠️ Часть ответа не удалось доставить. Попросите повторить, если она нужна.
image_undelivered = ⚠️ Картинка готова, но Telegram её не принял. Попробуйте ещё раз.
video_undelivered = ⚠️ Видео готово, но Telegram его не принял. Попробуйте ещё раз.

# Callbacks: a forged button, or one whose reply, menu or page no longer exists.
button_expired = Эта кнопка устарела.
