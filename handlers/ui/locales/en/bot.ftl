# Texts of the core bot: start and help, chat and answers, errors, media, settings,
# /balance and /usage, the admins' /stats and /broadcast.
# Message ids are the keys that handlers pass to t() (handlers/ui/texts.py).

start =
    👋 Hi, { $name }! I'm an AI assistant: ask me anything and I'll answer, streaming the text as it is written.

    Current model: <code>{ $model }</code>

    /model — choose a model
    /new — start a new conversation
    /settings — persona, temperature
    /lang — language
    /help — help

help =
    <b>What I can do</b>
    • Answer any message, streaming the text; press Stop to interrupt.
    • Remember the conversation (as much as the model's context holds); /new starts over.
    • Send a photo or an album (with a question in the caption) and I'll look at it; follow-up questions about it work too.
    • Send a voice note and I'll answer it — by voice, if you like.
    • In groups I answer when mentioned (@{ $bot }), when you reply to my message, or to a command.

    <b>Commands</b>
    /model — choose a model (or /model &lt;id&gt;)
    /new — new conversation
    /image &lt;prompt&gt; — draw a picture (/image 16:9 … for wide)
    /video &lt;prompt&gt; — make a short video (or a photo captioned /video …)
    /settings — persona, temperature, vision and image models, voice, reply mode
    { $usage }
    /lang — interface language
    /help — this help

cmd_start = Start the bot
cmd_help = What the bot can do
cmd_new = New conversation
cmd_model = Choose a model
cmd_settings = Persona and temperature
cmd_lang = Language
new_done = 🆕 New conversation started. Earlier messages will not be sent to the model.
stopped_mark = ⏹ Stopped
interrupted_mark = ⚠️ The answer was interrupted by a connection error.
queue_position = ⏳ Many requests right now — you are #{ $position } in the queue.
thinking = …

# Before the first answer replayed after a crash or a restart, once per chat.
restart_note = 🔄 The bot has restarted and is answering again.
stop_button = ⏹ Stop
stop_not_yours = Only the person who asked can stop this answer.
stop_gone = This answer has already finished.
stop_ok = Stopping…
empty_answer = The model returned an empty answer. Try rephrasing or another model.
err_context = 📚 The conversation is too long for this model. Send /new to start a fresh one (or choose a model with a larger context in /model).
err_max_tokens = This model cannot produce answers that long. An admin should lower MAX_TOKENS.
err_auth = 🔑 The bot's API key was rejected by the AI service. The bot's admin has to fix it.
err_funds = 💳 The bot's AI account has run out of funds. Please tell the bot's admin.
err_cost_limit = 💳 This request costs more than the account's per-request limit. Try a cheaper model (/model) or /new.
err_not_offered = ℹ️ The provider of <code>{ $model }</code> does not offer this.
err_model = 🚫 The model <code>{ $model }</code> is not available on the bot's plan. Choose another one with /model.
err_moderation = 🙅 The model refused to answer this request (moderation). Rephrase it or try another model.
err_rate = 🐢 The AI service is busy right now. Please try again in a minute.
err_unavailable = 🛠 The AI service is temporarily unavailable. Please try again later.
err_bad_request = The AI service could not process this request.
err_unexpected = Something went wrong on my side. Please try again.
admin_detail = Upstream said: { $detail }
unknown_command = I don't know this command. Send /help to see what I can do.

# --- media -----------------------------------------------------------
cmd_image = Generate an image
cmd_video = Generate a video
model_providers_title = Choose a provider (current model: <code>{ $model }</code>).
models_unavailable = ⚠️ Models of { $provider } are unavailable now.
btn_providers = « Providers
model_matches = Several models match <code>{ $query }</code>. Choose one:
model_matches_more = …and { $count } more: be more precise.
cmd_balance = Account balance
cmd_usage = My usage
voice_needs_provider = 🎙 Voice notes need a speech provider, and none is configured here. Please type your question.
refused = 🙅 The model declined to discuss this topic. Try asking differently, or choose another model with /model.
truncated_mark = The answer was cut at the length limit.
temperature_dropped = ℹ️ This model does not take a temperature setting, so it answers with its own.
model_replaced = ℹ️ Your model <code>{ $model }</code> is no longer available here, so the default answers. Choose another with /model.
describe_image = Describe this image.
describe_images = Describe these images.
file_too_big = 📦 This file is larger than 20 MB, the most a bot can download. Send a smaller one.
image_unsupported = 🖼 I can't read this image format. Send a JPEG, PNG, WEBP or GIF.
image_corrupt = 🖼 This image seems damaged; I couldn't open it.
image_too_big = 🖼 This image is too large to process. Send a smaller one.
transcript = 🎙 <i>{ $text }</i>
audio_empty = 🎙 The recording is empty.
audio_silent = 🎙 I couldn't hear any words in this recording.
audio_corrupt = 🎙 I couldn't read this audio file. Try recording it again.
audio_too_long = 🎙 The recording is too long (the limit is { $minutes } { $minutes ->
        [one] minute
       *[other] minutes
    }).
voice_failed = 🔇 I couldn't voice the answer, so here it is as text.

image_usage =
    Usage: <code>/image a red fox in the snow</code>
    Aspect ratio: <code>/image 16:9 …</code> (1:1, 16:9, 9:16).

image_bad_aspect = Unsupported aspect ratio { $aspect }. Use 1:1, 16:9 or 9:16.
image_refused = 🙅 The image model refused this prompt. Rephrase it and try again.
image_model_off = 🚫 The image model <code>{ $model }</code> is not available. Choose another in /settings.
video_usage = Usage: <code>/video a cat surfing a wave</code>, or send a photo with the caption <code>/video what should happen</code>.
video_queued = 🎬 Video request accepted. Waiting in the queue… ({ $elapsed })
video_in_progress = 🎬 Generating the video… ({ $elapsed })
video_done = 🎬 Your video is ready.
video_link = 🎬 Your video is ready, but it is too large to send here: { $url }
video_failed = 🎬 The video could not be generated: { $reason }
video_timeout = 🎬 The video took too long and was abandoned. Please try again.
video_too_many = 🎬 You already have { $limit } { $limit ->
        [one] video
       *[other] videos
    } in progress. Wait for one to finish.

# Pictures from a task API (MashaGPT) are made as jobs, like videos.
image_queued = 🎨 Picture request accepted. Waiting in the queue… ({ $elapsed })
image_in_progress = 🎨 Drawing the picture… ({ $elapsed })
image_done = 🎨 Your picture is ready.
image_link = 🎨 Your picture is ready, but it could not be sent here: { $url }
image_failed = 🎨 The picture could not be drawn: { $reason }
image_timeout = 🎨 The picture took too long and was abandoned. Please try again.
image_too_many = 🎨 You already have { $limit } { $limit ->
        [one] picture or video
       *[other] pictures or videos
    } in progress. Wait for one to finish.
unknown_reason = no reason given

# /balance: one block per provider that offers a balance, titled with its name.
balance =
    💰 <b>{ $title }</b>
    Balance: { $credits } { $credits ->
        [one] credit
       *[other] credits
    }
    Subscription: { $subscription }{ $until }
    Status: { $status_icon } { $status_text }

balance_until = {" "}until { $date }

balance_tokens =
    💰 <b>{ $title }</b>
    Tokens left:
    { $lines }

balance_tokens_line = • { $model }: { $tokens }

balance_tokens_empty =
    💰 <b>{ $title }</b>
    No prepaid tokens left.

balance_unavailable = 💰 <b>{ $title }</b>: the balance is not available: { $reason }
balance_not_offered = not offered by this provider
balance_pay_as_you_go = pay-as-you-go account: no prepaid balance
balance_try_later = try again later
balance_none = 💰 None of the bot's AI providers reports an account balance.
cmd_stats = Bot statistics (admins)
cmd_broadcast = Message every user (admins)
private_only = This command works in a private chat with the bot.

stats =
    📊 <b>Statistics</b>
    👥 Users: { $users } (blocked the bot: { $blocked })
    🆕 New: { $new_day } in 24 h · { $new_week } in 7 days
    🔥 Active (24 h / 7 d / 30 d): { $active_day } / { $active_week } / { $active_month }
    💬 Requests (24 h / 7 d / 30 d): { $requests_day } / { $requests_week } / { $requests_month }
    🪙 Last 30 days: { $tokens } { $tokens ->
        [one] token
       *[other] tokens
    }, { NUMBER($credits, minimumFractionDigits: 2, maximumFractionDigits: 2) } credits
    { $models }⏱ Running for { $uptime }{ $broadcast }

stats_models =
    🏆 Top models, 30 days:
    { $lines }
    {""}

stats_broadcast =
    {""}
    📣 Broadcast #{ NUMBER($id, useGrouping: 0) } in progress: { $done } of { $total }

duration_hm = { $hours } h { $minutes } min
duration_m = { $minutes } min
duration_s = { $seconds } s

broadcast_ask =
    📣 Send me the message for { $count ->
        [one] the { $count } user
       *[other] all { $count } users
    }. It is copied as it is: text, photo, video, voice, file, with its formatting and buttons.
    /cancel to cancel.

broadcast_confirm = Send this message to { $count } { $count ->
        [one] user
       *[other] users
    }? It takes about { $duration }.
broadcast_no_albums = An album can't be broadcast as one message: send one photo or video.
broadcast_nobody = There is nobody to send it to yet.
broadcast_busy = Broadcast #{ NUMBER($id, useGrouping: 0) } is still running; stop it or wait for it to finish.
broadcast_send_button = ✅ Send
broadcast_cancel_button = ✖️ Cancel
broadcast_stop_button = ⏹ Stop
broadcast_stopping = Stopping…
broadcast_not_running = This broadcast is not running.

broadcast_progress =
    📣 Broadcast #{ NUMBER($id, useGrouping: 0) }: { $done } of { $total } ({ $percent }%)
    ✅ delivered { $delivered } · 🚫 blocked the bot { $blocked } · ⚠️ failed { $failed }
    ⏱ about { $eta } left

broadcast_finished =
    { $icon } Broadcast #{ NUMBER($id, useGrouping: 0) } { $outcome } ({ $duration }).
    ✅ delivered { $delivered } · 🚫 blocked the bot { $blocked } · ⚠️ failed { $failed }{ $reason }

broadcast_done = finished
broadcast_stopped = stopped
broadcast_failed = broke off

broadcast_source_gone =
    {""}
    ❗ The message being sent was deleted, so nobody else can receive it.

admins_only = This command is for the bot's admins.

# /usage: the overall lines, then one block per provider (when there are several);
# $today and $total are "usage_requests, usage_tokens[, usage_credits][, usage_energy]".
usage =
    📊 <b>Your usage</b>
    Today: { $today }
    Total: { $total }

usage_provider =
    <b>{ $title }</b>
    Today: { $today }
    Total: { $total }

usage_primary_provider = Main provider
usage_requests = { $count } { $count ->
        [one] request
       *[other] requests
    }
usage_tokens = { $count } { $count ->
        [one] token
       *[other] tokens
    }
# Always two decimals, so always the plural ("1.00 credits").
usage_credits = { NUMBER($amount, minimumFractionDigits: 2, maximumFractionDigits: 2) } credits
usage_energy = { NUMBER($amount, minimumFractionDigits: 2, maximumFractionDigits: 2) } energy
btn_vision_model = 👁 Vision model
btn_image_model = 🎨 Image model
btn_voice = 🗣 Voice
btn_reply_mode = 💬 Reply mode
reply_mode_text = Text
reply_mode_voice = Voice
reply_mode_both = Text + voice
reply_mode_auto = Auto (voice to voice)
pick_vision_model = Choose the vision model:
pick_image_model = Choose the image model:
pick_voice = Choose the voice:
pick_reply_mode = How should I answer?
no_models_of_kind = No such models in the current list; the default is used.
not_text = I understand text, photos, image files and voice messages. Send your question as one of those.
model_title = Choose a model (current: <code>{ $model }</code>). Page { $page }/{ $pages }.
model_list_empty = The model list is not available right now. You can still set one directly: /model &lt;id&gt;.
model_set = ✅ Model set: <code>{ $model }</code>
model_unknown = There is no chat model <code>{ $model }</code>. Send /model to see the list.
model_gone = That model is no longer in the list. Send /model again.

settings_title =
    <b>Settings</b>
    Model: <code>{ $model }</code>
    Persona: { $persona }
    Temperature: { $temperature }
    Language: { $lang }
    Vision model: <code>{ $vision }</code>
    Image model: <code>{ $image }</code>
    Voice: { $voice }
    Reply mode: { $reply_mode }

persona_default = default
temperature_default = model default
btn_persona = 🎭 Persona
btn_temperature = 🌡 Temperature
btn_reset = ♻️ Reset to defaults
btn_back = « Back
btn_default = Default
btn_cancel = Cancel
persona_ask = Send the persona (system prompt) as one message, e.g. “You are a concise Python expert”. Send /cancel to keep the current one.
persona_set = ✅ Persona saved.
persona_cleared = ✅ Persona reset to default.
persona_bad = Please send the persona as text (up to 4000 characters).
cancelled = Cancelled.
temperature_ask = Choose the temperature: lower is more precise, higher is more creative.
temperature_set = ✅ Temperature: { $temperature }
reset_done = ♻️ Settings reset to defaults.
lang_ask = Choose the language:
lang_set = ✅ Language: English
lang_auto = Auto (from Telegram)

# Delivery: Telegram did not take a message that carried an answer.
answer_undelivered = ⚠️ Telegram did not accept my answer, so it could not be delivered. Please ask again.
answer_partly_delivered = ⚠️ Part of the answer could not be delivered. Ask me to repeat it if you need it.
image_undelivered = ⚠️ The picture is ready, but Telegram did not accept it. Please try again.
video_undelivered = ⚠️ The video is ready, but Telegram did not accept it. Please try again.

# Callbacks: a forged button, or one whose reply, menu or page no longer exists.
button_expired = This button has expired.
