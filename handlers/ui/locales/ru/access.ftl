# Тексты части "access": отказы в платных вопросах (бан, список доступа, флуд, дневной лимит),
# остаток лимита в /usage и команды админов /allow, /deny, /ban, /unban, /limit.

## Отказы (вместо ответа; провайдеру ничего не отправляется)

access-banned = 🚫 Вам больше нельзя пользоваться этим ботом.
access-private = 🔒 Это закрытый бот. Чтобы получить доступ, напишите его администратору.
access-flood = ⏳ Слишком много сообщений подряд: подождите { $seconds } с и спросите снова.
access-quota-requests = 📉 Дневной лимит исчерпан: { $limit } { $limit ->
        [one] запрос
        [few] запроса
       *[many] запросов
        [other] запроса
    }. Он обновится в { $time } UTC, через { $wait }.
access-quota-tokens = 📉 Дневной лимит исчерпан: { $limit } { $limit ->
        [one] токен
        [few] токена
       *[many] токенов
        [other] токена
    }. Он обновится в { $time } UTC, через { $wait }.
access-wait = { $hours ->
        [0] { $minutes } мин
       *[other] { $minutes ->
            [0] { $hours } ч
           *[other] { $hours } ч { $minutes } мин
        }
    }

## /usage: остаток на сегодня (только когда лимит есть)

# "из 1 запроса", "из 2 запросов", "из 21 запроса": родительный падеж.
access-left-requests = { $left } из { $limit } { $limit ->
        [one] запроса
       *[other] запросов
    }
access-left-tokens = { $left } из { $limit } { $limit ->
        [one] токена
       *[other] токенов
    }
access-usage-left = ⏳ Осталось на сегодня: { $left }; лимит обновится в { $time } UTC, через { $wait }.

## Команды админов (в личном чате)

access-usage-allow = Формат: <code>/allow &lt;id пользователя или группы&gt;</code>
access-usage-deny = Формат: <code>/deny &lt;id пользователя или группы&gt;</code>
access-usage-ban = Формат: <code>/ban &lt;id пользователя&gt;</code>
access-usage-unban = Формат: <code>/unban &lt;id пользователя&gt;</code>
access-usage-limit = Формат: <code>/limit &lt;id пользователя&gt; &lt;запросов в день&gt;</code> (0 — без лимита) или <code>/limit &lt;id пользователя&gt; default</code>
access-allowed = ✅ <code>{ $id }</code> может пользоваться ботом.
access-denied = ☑️ <code>{ $id }</code> убран из списка доступа.
access-open-mode = (ACCESS_MODE = open: ботом и так могут пользоваться все.)
access-banned-done = 🚫 <code>{ $id }</code> забанен: одно уведомление, дальше тишина.
access-admin-exempt = (Это администратор: администраторам не отказывают.)
access-unbanned = ✅ <code>{ $id }</code> разбанен.
access-limit-set = ✅ Дневной лимит <code>{ $id }</code>: { $limit } { $limit ->
        [one] запрос
        [few] запроса
       *[many] запросов
        [other] запроса
    }.
access-limit-unlimited = ✅ У <code>{ $id }</code> теперь нет дневного лимита.
access-limit-default = ✅ У <code>{ $id }</code> снова лимит по умолчанию: { $limit ->
        [0] без лимита
       *[other] { $limit } { $limit ->
            [one] запрос
            [few] запроса
           *[many] запросов
            [other] запроса
        }
    }.
