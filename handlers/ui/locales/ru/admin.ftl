# Тексты части «admin»: меню администраторов, дополнения /stats, /user, уведомления
# администраторам, /broadcast <текст> и понятные значения в /balance.

## Меню команд (описания; остальные cmd_* — в bot.ftl и questions.ftl)

cmd_user = Профиль и расход пользователя (админы)
cmd_allow = Разрешить пользователю или группе (админы)
cmd_deny = Убрать из списка разрешённых (админы)
cmd_ban = Заблокировать пользователя (админы)
cmd_unban = Снять блокировку (админы)
cmd_limit = Дневной лимит пользователя (админы)

## /help: строка про /usage, с /balance только для тех, кому он доступен
# admin-help-usage-balance: админам или всем при BALANCE_FOR_EVERYONE; иначе admin-help-usage.

admin-help-usage = /usage — ваш расход
admin-help-usage-balance = /usage — ваш расход; /balance — баланс аккаунта

## /stats: группы и отклонённые вопросы (после цифр по людям)

admin-stats-groups = 👪 Групп: { $groups } (удалили бота: { $left }) · активных за 24 ч / 7 д: { $active_day } / { $active_week }
# $lines: admin-stats-refusal-line, по строке на причину.
admin-stats-refusals =
    🚧 Отклонено (сегодня / 30 дней):
    { $lines }
admin-stats-refusals-none = 🚧 Отклонённых за 30 дней нет
admin-stats-refusal-line = • { $reason }: { $today } / { $month }
admin-refusal-banned = заблокированы
admin-refusal-not_allowed = нет в списке разрешённых
admin-refusal-flood = слишком много сообщений
admin-refusal-quota_requests = дневной лимит запросов
admin-refusal-quota_tokens = дневной лимит токенов

## /user <id|@username>

admin-user-usage = Использование: <code>/user &lt;id&gt;</code> или <code>/user @username</code>
admin-user-unknown = Пользователь { $query } боту не писал.
# $username: « · @name» или ""; $status: admin-user-status-* через « · »;
# $model_note: admin-user-model-default или ""; $today, $total: usage_requests, usage_tokens…;
# $quota: admin-user-quota или admin-user-quota-exempt.
admin-user-card =
    👤 <b>{ $name }</b> · <code>{ $id }</code>{ $username }
    { $status }
    🌐 Язык: { $lang } · 🤖 Модель: <code>{ $model }</code>{ $model_note }
    📊 Сегодня: { $today }
    📈 Всего: { $total }
    { $quota }
admin-user-model-default = {" "}(по умолчанию)
admin-user-no-name = (без имени)
admin-user-status-admin = 🛡 администратор
admin-user-status-allowed = ✅ может пользоваться ботом
admin-user-status-not-allowed = 🔒 нет в списке разрешённых
admin-user-status-banned = 🚫 заблокирован
admin-user-status-blocked = 📵 заблокировал бота
admin-user-status-reachable = 💬 не блокировал бота
admin-user-quota = ⏳ Дневной лимит: { $requests } · { $tokens }{ $override }
admin-user-quota-exempt = ⏳ Дневного лимита нет (администратор)
admin-user-quota-override = {" "}(задан через /limit)
admin-user-limit-requests = { $used } из { $limit ->
        [one] { $limit } запроса
        [few] { $limit } запросов
        [many] { $limit } запросов
       *[other] { $limit } запроса
    }
admin-user-limit-requests-none = запросы: без лимита
admin-user-limit-tokens = { $used } из { $limit ->
        [one] { $limit } токена
        [few] { $limit } токенов
        [many] { $limit } токенов
       *[other] { $limit } токена
    }
admin-user-limit-tokens-none = токены: без лимита

## Уведомления всем администраторам, по одному на событие

admin-alert-breaker_open = 🔴 <b>{ $provider }</b> не отвечает: бот пока перестал отправлять туда запросы (пользователям сообщается, что сервис недоступен) и скоро попробует снова.
admin-alert-breaker_closed = 🟢 <b>{ $provider }</b> снова отвечает: запросы проходят.
# $credits: admin-alert-credits или "".
admin-alert-balance_low = 🟡 <b>{ $provider }</b>: баланс на исходе{ $credits }. Пополните его в ближайшее время.
admin-alert-balance_very_low = 🔴 <b>{ $provider }</b>: баланс почти исчерпан{ $credits }. Пополните его сейчас, иначе запросы перестанут проходить.
admin-alert-balance_ok = 🟢 <b>{ $provider }</b>: с балансом снова всё в порядке{ $credits }.
admin-alert-credits = {" "}({ $credits } кред.)
admin-alert-tokens_low = 🟡 <b>{ $provider }</b>: для { $model } осталось токенов: { $tokens } (меньше { $threshold }).
admin-alert-tokens_ok = 🟢 <b>{ $provider }</b>: для { $model } снова есть токены: { $tokens }.

## /balance: «сырые» значения провайдеров словами

admin-balance-status-ok = всё в порядке
admin-balance-status-low = баланс на исходе
admin-balance-status-very-low = баланс почти исчерпан
admin-balance-subscription-active = активна
admin-balance-subscription-none = нет
# Дата: $day и $year цифрами, $month — один из jan … dec.
admin-date = { $day } { $month ->
        [jan] января
        [feb] февраля
        [mar] марта
        [apr] апреля
        [may] мая
        [jun] июня
        [jul] июля
        [aug] августа
        [sep] сентября
        [oct] октября
        [nov] ноября
       *[dec] декабря
    } { $year }
