from __future__ import annotations

from services.image_memory import ImageMemory, image_placeholder, is_image_placeholder


def test_placeholders() -> None:
    assert image_placeholder(1, "what is it") == "[image] what is it"
    assert image_placeholder(3, "") == "[3 images]"
    assert is_image_placeholder("[image] x") and is_image_placeholder("[3 images] y")
    assert not is_image_placeholder("[link] x") and not is_image_placeholder("image")


def test_images_last_for_a_few_exchanges_then_go() -> None:
    memory = ImageMemory(max_turns=2)
    memory.remember("chat", "[image] cat", ("data:a",))
    memory.exchange_done("chat", "[image] cat")  # the exchange that brought the image
    assert memory.recent("chat") is not None
    memory.exchange_done("chat", "follow-up 1")
    assert memory.recent("chat") is not None
    memory.exchange_done("chat", "follow-up 2")
    assert memory.recent("chat") is None
    assert memory.total_bytes == 0


def test_memory_is_bounded_by_bytes_oldest_first() -> None:
    memory = ImageMemory(max_bytes=100)
    memory.remember("a", "[image]", ("x" * 40,))
    memory.remember("b", "[image]", ("y" * 40,))
    memory.remember("c", "[image]", ("z" * 40,))
    assert memory.recent("a") is None
    assert memory.recent("b") is not None and memory.recent("c") is not None
    assert memory.total_bytes == 80
    memory.remember("huge", "[image]", ("w" * 500,))  # larger than the whole budget: not kept
    assert memory.recent("huge") is None and memory.total_bytes == 80
    memory.forget("b")
    assert memory.total_bytes == 40
