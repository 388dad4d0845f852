# Texts of part "access": refusals of paid questions (ban, allowlist, flood, daily quota),
# what is left of the quota in /usage, and the admins' /allow, /deny, /ban, /unban, /limit.

## Refusals (sent instead of an answer; nothing reaches the provider)

access-banned = 🚫 You can no longer use this bot.
access-private = 🔒 This bot is private. Ask its admin for access.
# $seconds: until the next message is taken (at least 1).
access-flood = ⏳ Too many messages at once: wait { $seconds } s, then ask again.
# $limit: the daily limit; $time: when it resets ("00:00"); $wait: access-wait-*.
access-quota-requests = 📉 You've used today's { $limit ->
        [one] { $limit } request
       *[other] { $limit } requests
    }. The limit resets at { $time } UTC, in { $wait }.
access-quota-tokens = 📉 You've used today's { $limit ->
        [one] { $limit } token
       *[other] { $limit } tokens
    }. The limit resets at { $time } UTC, in { $wait }.
access-wait = { $hours ->
        [0] { $minutes } min
       *[other] { $minutes ->
            [0] { $hours } h
           *[other] { $hours } h { $minutes } min
        }
    }

## /usage: what is left today (only when there is a limit)

access-left-requests = { $left } of { $limit ->
        [one] { $limit } request
       *[other] { $limit } requests
    }
access-left-tokens = { $left } of { $limit ->
        [one] { $limit } token
       *[other] { $limit } tokens
    }
# $left: access-left-* joined by ", ".
access-usage-left = ⏳ Left today: { $left }; the limit resets at { $time } UTC, in { $wait }.

## The admins' commands (private chat)

access-usage-allow = Usage: <code>/allow &lt;user_id or group_id&gt;</code>
access-usage-deny = Usage: <code>/deny &lt;user_id or group_id&gt;</code>
access-usage-ban = Usage: <code>/ban &lt;user_id&gt;</code>
access-usage-unban = Usage: <code>/unban &lt;user_id&gt;</code>
access-usage-limit = Usage: <code>/limit &lt;user_id&gt; &lt;requests per day&gt;</code> (0 = unlimited) or <code>/limit &lt;user_id&gt; default</code>
access-allowed = ✅ <code>{ $id }</code> may use the bot.
access-denied = ☑️ <code>{ $id }</code> is off the allowlist.
# Added to access-allowed / access-denied while ACCESS_MODE is open.
access-open-mode = (ACCESS_MODE is open: everyone may use the bot anyway.)
access-banned-done = 🚫 <code>{ $id }</code> is banned: one notice, then silence.
access-admin-exempt = (An admin: admins are never refused.)
access-unbanned = ✅ <code>{ $id }</code> is no longer banned.
access-limit-set = ✅ Daily limit of <code>{ $id }</code>: { $limit ->
        [one] { $limit } request
       *[other] { $limit } requests
    }.
access-limit-unlimited = ✅ <code>{ $id }</code> has no daily limit now.
access-limit-default = ✅ <code>{ $id }</code> is back to the default daily limit: { $limit ->
        [0] none
        [one] { $limit } request
       *[other] { $limit } requests
    }.
