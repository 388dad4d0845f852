# Texts of part "groups": a group's own settings, its admins, menus owned by their opener,
# the introduction when the bot joins a group, and the settings menus' confirmations.

## Groups

# The introduction, posted once when the bot is added to a group.
group-intro =
    👋 Hello, everyone! I'm an AI assistant. To ask me something:
    • mention me: @{ $bot } your question
    • reply to one of my messages
    • or send /ask &lt;question&gt;

    The group's admins choose my model and persona for this group with /model and /settings. /help — more.

group-start =
    👋 Hi! In this group, mention me (@{ $bot }), reply to my message or send /ask &lt;question&gt;, and I'll answer. /help — more.

# "What I can do" opens the help in any chat.
group-help =
    <b>What I can do in this group</b>
    • I answer when you mention me (@{ $bot } …), reply to my message, or send /ask &lt;question&gt;.
    • Mention me in a photo's or voice note's caption, or reply to me with one, and I'll look or listen.
    • The group shares one conversation (each forum topic its own); I see who said what.

    <b>For the group's admins</b>
    /model — the group's model
    /settings — the group's persona, temperature and vision model
    /new — start the group's (or this topic's) conversation over

    Your private chat with me keeps its own settings and history; /lang sets your language.

group-admins-only = 🔒 Only this group's admins can change its settings or start its conversation over.
group-menu-not-yours = This menu belongs to the person who opened it. Send the command yourself to get your own.

group-settings-title =
    <b>Group settings</b>
    Model: <code>{ $model }</code>
    Persona: { $persona }
    Temperature: { $temperature }
    Vision model: <code>{ $vision }</code>

    They apply to everyone's questions in this group. Your private chat with me keeps its own settings.

group-persona-ask = Reply to this message with the group's persona (system prompt), e.g. “You are a concise Python expert”. Send /cancel to keep the current one.
group-persona-set = ✅ The group's persona is saved.
group-reset-ask = Reset the group's model, persona, temperature and vision model to the defaults?

## Settings menus in any chat

menu-reset-ask = Reset your model, persona, temperature, media models, voice and reply mode to the defaults? (Your language stays.)
menu-reset-yes = ♻️ Yes, reset
menu-nothing-to-cancel = Nothing to cancel.
menu-vision-set = ✅ Vision model: { $model }
menu-image-set = ✅ Image model: { $model }
menu-voice-set = ✅ Voice: { $voice }
menu-reply-mode-set = ✅ Reply mode: { $mode }
