"""Token estimate: behaviour, speed, and accuracy against the real o200k tokenizer.

The accuracy test needs the optional `bpe-openai` package (not a runtime dependency:
`pip install bpe-openai`); it is skipped without it. Measured ratios are recorded in
/work/brief/tokens-accuracy.md.
"""

from __future__ import annotations

import time

import pytest

from services.tokens import MESSAGE_OVERHEAD, estimate_message_tokens, estimate_tokens

ENGLISH_PROSE = """\
Great question! There are several reasons why the sky appears blue during the day, and the
main one is a phenomenon called Rayleigh scattering. Sunlight looks white, but it is actually a
mixture of all the colors of the visible spectrum. When this light enters the atmosphere, it
collides with molecules of nitrogen and oxygen that are much smaller than its wavelength.

Shorter wavelengths, such as blue and violet, are scattered far more strongly than longer ones
like red and orange. The intensity of the scattering is inversely proportional to the fourth
power of the wavelength, so blue light is scattered roughly five times more than red light.
As a result, wherever you look in the sky, you see this scattered blue light coming toward you.

You might wonder why the sky is not violet, since violet light has an even shorter wavelength.
There are a few reasons. First, the Sun emits less violet light than blue light. Second, some of
the violet light is absorbed high in the atmosphere. Finally, our eyes are more sensitive to
blue, and the cones in our retina respond to the mixture in a way that we perceive as sky blue.

At sunrise and sunset the situation changes. The light has to travel through a much thicker
layer of air before it reaches your eyes, so most of the blue light is scattered away long
before it arrives. What remains is dominated by the longer wavelengths, which is why the
horizon glows with warm shades of orange, pink and red. Dust, smoke and water droplets can
make these colors even more vivid, which explains the spectacular sunsets after wildfires or
volcanic eruptions.

In short: the sky is blue because air molecules scatter short wavelengths of sunlight much
more efficiently than long ones, and our eyes are particularly good at noticing that blue.
"""

ENGLISH_TECHNICAL = """\
To configure the reverse proxy, create a file named `/etc/nginx/sites-available/bot.conf`
and point the upstream to the application server listening on port 8080. Make sure that the
`proxy_read_timeout` directive is at least 300 seconds, otherwise long-running streaming
responses will be cut off by the proxy before the model has finished generating its answer.

The service exposes three endpoints: `GET /healthz` returns 200 when the process is alive,
`GET /readyz` returns 200 only after the database migrations have been applied, and
`POST /webhook/{token}` receives updates from Telegram. Requests with an invalid token are
rejected with HTTP 403 and are not logged, to avoid leaking secrets into the log files.

Rate limiting is implemented with a token bucket per user and a global bucket for the whole
deployment. The default configuration allows 20 requests per minute per user and 600 requests
per minute in total; both values can be overridden with environment variables. When a limit is
exceeded, the client receives HTTP 429 with a Retry-After header that tells it how many seconds
to wait before trying again. Version 2.4.1 introduced exponential backoff with jitter (base
delay 0.5 s, maximum 8 s) for upstream errors such as 502, 503 and 504.
"""

RUSSIAN_PROSE = """\
Отличный вопрос! Небо днём кажется голубым из-за явления, которое называется рэлеевским
рассеянием. Солнечный свет выглядит белым, но на самом деле он состоит из всех цветов видимого
спектра. Попадая в атмосферу, свет сталкивается с молекулами азота и кислорода, которые гораздо
меньше длины его волны.

Короткие волны, то есть синий и фиолетовый свет, рассеиваются значительно сильнее, чем длинные,
например красный и оранжевый. Интенсивность рассеяния обратно пропорциональна четвёртой степени
длины волны, поэтому синий свет рассеивается примерно в пять раз сильнее красного. В результате,
куда бы вы ни посмотрели, до ваших глаз доходит именно этот рассеянный голубой свет.

Почему же небо не фиолетовое, ведь у фиолетового света волна ещё короче? Причин несколько.
Во-первых, Солнце излучает меньше фиолетового света, чем синего. Во-вторых, часть фиолетового
излучения поглощается в верхних слоях атмосферы. Наконец, наши глаза более чувствительны к синему
цвету, и колбочки сетчатки воспринимают эту смесь как привычный небесно-голубой оттенок.

На закате и на рассвете картина меняется. Свету приходится проходить через гораздо более толстый
слой воздуха, и почти весь синий свет рассеивается по дороге. Остаются более длинные волны,
поэтому горизонт окрашивается в тёплые оранжевые, розовые и красные тона. Пыль, дым и капли воды
делают эти цвета ещё ярче — именно поэтому после лесных пожаров закаты бывают особенно красивыми.
"""

RUSSIAN_TECHNICAL = """\
Чтобы настроить обратный прокси, создайте файл `/etc/nginx/sites-available/bot.conf` и укажите
в нём адрес сервера приложения на порту 8080. Убедитесь, что значение `proxy_read_timeout`
не меньше 300 секунд, иначе длинные потоковые ответы будут обрываться раньше, чем модель
закончит генерацию.

Сервис предоставляет три метода: `GET /healthz` возвращает 200, если процесс жив, `GET /readyz`
возвращает 200 только после применения миграций базы данных, а `POST /webhook/{token}` принимает
обновления от Telegram. Запросы с неверным токеном отклоняются с кодом 403 и не попадают в журнал.

Ограничение частоты запросов реализовано с помощью «ведра токенов» для каждого пользователя и
общего ведра для всего развёртывания. По умолчанию разрешено 20 запросов в минуту на пользователя
и 600 запросов в минуту суммарно; оба значения можно изменить через переменные окружения. При
превышении лимита клиент получает ответ 429 с заголовком Retry-After. В версии 2.4.1 появилась
экспоненциальная задержка со случайным разбросом (0,5 с — 8 с) для ошибок 502, 503 и 504.
"""

PYTHON_CODE = '''\
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """A unit of work with retries."""

    name: str
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = 3


class Worker:
    def __init__(self, queue: asyncio.Queue[Job], *, concurrency: int = 4) -> None:
        self._queue = queue
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for index in range(self._concurrency):
            self._tasks.append(asyncio.create_task(self._run(index), name=f"worker-{index}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, index: int) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self.handle(job)
            except Exception:  # noqa: BLE001 - one bad job must not kill the worker
                job.attempts += 1
                if job.attempts < job.max_attempts:
                    delay = min(2 ** job.attempts * 0.5, 8.0)
                    log.warning(
                        "job %s failed (attempt %d), retrying in %.1fs",
                        job.name,
                        job.attempts,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    await self._queue.put(job)
                else:
                    log.exception("job %s failed permanently", job.name)
            finally:
                self._queue.task_done()

    async def handle(self, job: Job) -> None:
        if not job.payload:
            raise ValueError(f"empty payload for {job.name!r}")
        total = sum(int(v) for v in job.payload.values() if str(v).isdigit())
        log.info("processed %s: total=%d", job.name, total)
'''

JS_CODE = """\
import { useEffect, useState } from "react";

export function useDebouncedSearch(query, delay = 300) {
  const [results, setResults] = useState([]);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState(null);

  useEffect(() => {
    if (!query || query.trim().length < 2) {
      setResults([]);
      return undefined;
    }
    const controller = new AbortController();
    const timer = setTimeout(async () => {
      setLoading(true);
      try {
        const response = await fetch(`/api/search?q=${encodeURIComponent(query)}`, {
          signal: controller.signal,
          headers: { Accept: "application/json" },
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const data = await response.json();
        setResults(data.items.map((item) => ({ id: item.id, title: item.title ?? "(untitled)" })));
        setError(null);
      } catch (err) {
        if (err.name !== "AbortError") setError(err);
      } finally {
        setLoading(false);
      }
    }, delay);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [query, delay]);

  return { results, loading, error };
}
"""

MARKDOWN_ANSWER = """\
## Comparison of sorting algorithms

| Algorithm | Best | Average | Worst | Stable |
|-----------|------|---------|-------|--------|
| Quicksort | `O(n log n)` | `O(n log n)` | `O(n^2)` | No |
| Mergesort | `O(n log n)` | `O(n log n)` | `O(n log n)` | Yes |
| Heapsort | `O(n log n)` | `O(n log n)` | `O(n log n)` | No |
| Timsort | `O(n)` | `O(n log n)` | `O(n log n)` | Yes |

**Key points:**

1. *Quicksort* is usually the fastest in practice because of good cache locality.
2. *Mergesort* guarantees `O(n log n)` but needs `O(n)` extra memory.
   - Linked lists can be merge-sorted in place.
   - External sorting of huge files is almost always a merge sort.
3. Python's `sorted()` uses **Timsort**, a hybrid of merge sort and insertion sort.

> Tip: for nearly sorted data, Timsort runs in linear time.

```python
data = [5, 2, 9, 1, 5, 6]
print(sorted(data, reverse=True))  # [9, 6, 5, 5, 2, 1]
```
"""

JSON_DATA = """\
{"id": "chatcmpl-9f8e7d6c", "object": "chat.completion", "created": 1718000000,
 "model": "openai/gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant",
 "content": "Hello! How can I help you today?"}, "finish_reason": "stop"}],
 "usage": {"prompt_tokens": 23, "completion_tokens": 9, "total_tokens": 32},
 "items": [{"sku": "A-1001", "price": 19.99, "qty": 3, "tags": ["new", "sale"]},
           {"sku": "B-2002", "price": 5.49, "qty": 12, "tags": []},
           {"sku": "C-3003", "price": 149.0, "qty": 1, "tags": ["premium", "gift", "limited"]}]}
"""

MIXED_CHAT = """\
Привет! Вот пример на Python, который считает частоту слов в тексте:

```python
from collections import Counter

def top_words(text: str, n: int = 10) -> list[tuple[str, int]]:
    words = [w.strip(".,!?«»").lower() for w in text.split()]
    return Counter(w for w in words if w).most_common(n)
```

Функция `top_words` возвращает список пар (слово, количество). Например, для строки
«мама мыла раму, мама любит раму» результат будет `[('мама', 2), ('раму', 2), ...]`. 😊
Если нужно учитывать формы слов (мама, маме, маму), используйте лемматизатор, например pymorphy3.
"""

SAMPLES: dict[str, tuple[str, str]] = {
    "english_prose": ("prose", ENGLISH_PROSE),
    "english_technical": ("prose", ENGLISH_TECHNICAL),
    "russian_prose": ("prose", RUSSIAN_PROSE),
    "russian_technical": ("prose", RUSSIAN_TECHNICAL),
    "python_code": ("code", PYTHON_CODE),
    "javascript_code": ("code", JS_CODE),
    "markdown_answer": ("mixed", MARKDOWN_ANSWER),
    "json": ("code", JSON_DATA),
    "mixed_ru_code": ("mixed", MIXED_CHAT),
}


# Estimate / real o200k count allowed per kind of sample: prose must err high but not by
# much; code and mixed Markdown a little wider.
BOUNDS = {"prose": (1.00, 1.15), "code": (0.97, 1.20), "mixed": (0.97, 1.20)}


def test_empty_and_tiny() -> None:
    assert estimate_tokens("") == 0
    # Rounded up: a tiny message never counts as free.
    assert 1 <= estimate_tokens("a") <= 2
    assert estimate_tokens(" ") == 1
    assert estimate_tokens("\n\n") == 1
    assert 1 <= estimate_tokens("Hi!") <= 3


def test_message_overhead() -> None:
    assert estimate_message_tokens("user", "") == MESSAGE_OVERHEAD
    text = ENGLISH_PROSE
    assert estimate_message_tokens("assistant", text) == estimate_tokens(text) + MESSAGE_OVERHEAD


def test_grows_with_text() -> None:
    one = estimate_tokens(ENGLISH_PROSE)
    assert estimate_tokens(ENGLISH_PROSE * 4) == pytest.approx(4 * one, rel=0.01)
    assert estimate_tokens(RUSSIAN_PROSE) > estimate_tokens(RUSSIAN_PROSE[:500])


@pytest.mark.parametrize(
    "text",
    [
        "😀🎉👍🏽🇷🇺",
        "東京は日本の首都です",
        "\ud800 lone surrogate",
        "\x00\x01\x7f",
        "ñ é ü ß",
        "x" * 10_000,
    ],
)
def test_odd_inputs_do_not_crash_and_are_positive(text: str) -> None:
    assert estimate_tokens(text) >= 1


def test_rough_magnitudes_without_a_tokenizer() -> None:
    # English prose is about 4.5-5 characters per token, Russian about 3.5 (o200k).
    assert 1789 / 5.2 < estimate_tokens(ENGLISH_PROSE) < 1789 / 3.8
    assert 1436 / 4.0 < estimate_tokens(RUSSIAN_PROSE) < 1436 / 3.0


def test_speed_at_least_20_mb_per_second() -> None:
    text = (ENGLISH_PROSE + RUSSIAN_PROSE + PYTHON_CODE + MARKDOWN_ANSWER) * 200
    size = len(text.encode())
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        estimate_tokens(text)
        best = min(best, time.perf_counter() - start)
    # The implementation runs at 40-60 MB/s; the bound leaves room for slow CI machines.
    assert size / best > 10e6, f"{size / best / 1e6:.1f} MB/s"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_accuracy_against_o200k(name: str) -> None:
    bpe_openai = pytest.importorskip("bpe_openai")
    encoding = bpe_openai.get_encoding("o200k_base")
    kind, text = SAMPLES[name]
    real = len(encoding.encode(text))
    ratio = estimate_tokens(text) / real
    low, high = BOUNDS[kind]
    assert low <= ratio <= high, f"{name}: estimate/real = {ratio:.3f} (real {real})"
