# Texts of part "admin": the admins' menu, /stats additions, /user, the notices sent to
# admins, /broadcast <text> and /balance's readable values.

## Command menu (descriptions; the other cmd_* are in bot.ftl and questions.ftl)

cmd_user = One user's profile and usage (admins)
cmd_allow = Allow a user or group (admins)
cmd_deny = Take off the allowlist (admins)
cmd_ban = Ban a user (admins)
cmd_unban = Lift a ban (admins)
cmd_limit = A user's daily limit (admins)

## /help: the /usage line, with /balance only for those who may use it
# admin-help-usage-balance: admins, or everyone when BALANCE_FOR_EVERYONE; else admin-help-usage.

admin-help-usage = /usage — what you have spent
admin-help-usage-balance = /usage — what you have spent; /balance — the account's balance

## /stats: groups and refused questions (after the figures of people)

admin-stats-groups = 👪 Groups: { $groups } (removed the bot: { $left }) · active 24 h / 7 d: { $active_day } / { $active_week }
# $lines: admin-stats-refusal-line, one per reason.
admin-stats-refusals =
    🚧 Refused (today / 30 days):
    { $lines }
admin-stats-refusals-none = 🚧 Refused: none in 30 days
admin-stats-refusal-line = • { $reason }: { $today } / { $month }
admin-refusal-banned = banned
admin-refusal-not_allowed = not on the allowlist
admin-refusal-flood = too many messages
admin-refusal-quota_requests = daily request limit
admin-refusal-quota_tokens = daily token limit

## /user <id|@username>

admin-user-usage = Usage: <code>/user &lt;id&gt;</code> or <code>/user @username</code>
admin-user-unknown = Nobody known as { $query } has written to the bot.
# $username: " · @name" or ""; $status: admin-user-status-* joined by " · ";
# $model_note: admin-user-model-default or ""; $today, $total: usage_requests, usage_tokens…;
# $quota: admin-user-quota or admin-user-quota-exempt.
admin-user-card =
    👤 <b>{ $name }</b> · <code>{ $id }</code>{ $username }
    { $status }
    🌐 Language: { $lang } · 🤖 Model: <code>{ $model }</code>{ $model_note }
    📊 Today: { $today }
    📈 Total: { $total }
    { $quota }
admin-user-model-default = {" "}(the default)
admin-user-no-name = (no name)
admin-user-status-admin = 🛡 admin
admin-user-status-allowed = ✅ may use the bot
admin-user-status-not-allowed = 🔒 not on the allowlist
admin-user-status-banned = 🚫 banned
admin-user-status-blocked = 📵 blocked the bot
admin-user-status-reachable = 💬 has not blocked the bot
admin-user-quota = ⏳ Daily limit: { $requests } · { $tokens }{ $override }
admin-user-quota-exempt = ⏳ Daily limit: none (admins are exempt)
admin-user-quota-override = {" "}(set by /limit)
admin-user-limit-requests = { $used } of { $limit ->
        [one] { $limit } request
       *[other] { $limit } requests
    } used
admin-user-limit-requests-none = requests: no limit
admin-user-limit-tokens = { $used } of { $limit ->
        [one] { $limit } token
       *[other] { $limit } tokens
    } used
admin-user-limit-tokens-none = tokens: no limit

## Notices sent to every admin, once per event

admin-alert-breaker_open = 🔴 <b>{ $provider }</b> keeps failing: the bot has stopped sending it requests for now (users are told it is unavailable) and will try again shortly.
admin-alert-breaker_closed = 🟢 <b>{ $provider }</b> answers again: requests go through.
# $credits: admin-alert-credits or "".
admin-alert-balance_low = 🟡 <b>{ $provider }</b>: the balance is low{ $credits }. Top it up soon.
admin-alert-balance_very_low = 🔴 <b>{ $provider }</b>: the balance is very low{ $credits }. Top it up now, or requests will fail.
admin-alert-balance_ok = 🟢 <b>{ $provider }</b>: the balance is fine again{ $credits }.
admin-alert-credits = {" "}({ $credits } credits)
admin-alert-tokens_low = 🟡 <b>{ $provider }</b>: { $tokens } tokens left for { $model } (below { $threshold }).
admin-alert-tokens_ok = 🟢 <b>{ $provider }</b>: { $tokens } tokens for { $model } again.

## /balance: the providers' raw values in words

admin-balance-status-ok = OK
admin-balance-status-low = low balance
admin-balance-status-very-low = very low balance
admin-balance-subscription-active = active
admin-balance-subscription-none = none
# A date: $day and $year as digits, $month one of jan … dec.
admin-date = { $day } { $month ->
        [jan] Jan
        [feb] Feb
        [mar] Mar
        [apr] Apr
        [may] May
        [jun] Jun
        [jul] Jul
        [aug] Aug
        [sep] Sep
        [oct] Oct
        [nov] Nov
       *[dec] Dec
    } { $year }
