"""The ecs and input bindings and their objects (spec/lua-bindings.md, the ecs and input rules;
spec/thread-safety.md for the input and world writers)."""

from __future__ import annotations

import pytest
from lua_harness import Harness
from support import on_thread

from refimpl.ecs import World
from refimpl.errors import ThreadAffinityError
from refimpl.input import InputState


@pytest.mark.spec("LB-ECS-CREATE")
def test_create_entity_returns_new_distinct_integers() -> None:
    h = Harness()
    a, b = h.state(), h.state()
    ok, _ = h.run(
        a, "for i = 1, 50 do local id = ecs.createEntity() probe.put(math.type(id), id) end"
    )
    assert ok
    assert all(kind == b"integer" for kind, _ in h.probed)
    ids = [id_ for _, id_ in h.probed]
    ids += [h.put(b, "ecs.createEntity()"), h.world.create_entity(), h.put(a, "ecs.createEntity()")]
    assert all(isinstance(id_, int) for id_ in ids)
    assert len(set(ids)) == len(ids) == 53
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-ECS-ADD")
def test_add_component_stores_deep_copy_of_plain_data() -> None:
    h = Harness()
    L = h.state()
    script = """
      local id = ecs.createEntity()
      local t = {position = {x = 0, y = 1.5, z = -2}, rotation = {x = 0, y = 0, z = 0, w = 1},
                 name = "hero", alive = true, [1] = "first"}
      ecs.addComponent(id, "Transform", t)
      t.position.x = 99
      t.name = "changed"
      probe.put(id)
    """
    ok, _ = h.run(L, script)
    assert ok
    ((entity,),) = h.probed
    assert isinstance(entity, int)
    assert h.world.get_component(entity, "Transform") == {
        b"position": {b"x": 0, b"y": 1.5, b"z": -2},
        b"rotation": {b"x": 0, b"y": 0, b"z": 0, b"w": 1},
        b"name": b"hero",
        b"alive": True,
        1: b"first",
    }
    for bad in (
        "ecs.addComponent(12345, 'T', {})",
        f"ecs.addComponent({entity}, 'T', {{f = print}})",
        f"ecs.addComponent({entity}, 'T', 5)",
    ):
        ok, message = h.run(L, bad)
        assert ok is False
        assert message.startswith(b"script:1: ecs.addComponent: ")
    assert h.world.get_component(entity, "T") is None
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-ECS-GET")
def test_get_component_returns_fresh_equal_table_or_nil() -> None:
    h = Harness()
    L = h.state()
    entity = h.world.create_entity()
    h.world.add_component(entity, "Transform", {b"position": {b"x": 7, b"y": 8}})
    script = f"""
      local a = ecs.getComponent({entity}, "Transform")
      local b = ecs.getComponent({entity}, "Transform")
      a.position.x = 100
      probe.put(a ~= b, b.position.x, b.position.y, ecs.getComponent({entity}, "Missing") == nil,
                "Position: " .. b.position.x)
    """
    ok, _ = h.run(L, script)
    assert ok
    assert h.probed == [(True, 7, 8, True, b"Position: 7")]
    assert h.world.get_component(entity, "Transform") == {b"position": {b"x": 7, b"y": 8}}
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-INPUT-KEY")
def test_is_key_pressed_returns_boolean_of_input_state() -> None:
    h = Harness()
    L = h.state()
    h.input.set_key("W", True)
    assert h.put(L, "input.isKeyPressed('W')") is True
    assert h.put(L, "input.isKeyPressed('S')") is False
    h.input.set_key("W", False)
    assert h.put(L, "input.isKeyPressed('W')") is False
    assert h.put(L, "type(input.isKeyPressed('W'))") == b"boolean"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-INPUT-MOUSE")
def test_get_mouse_pos_returns_two_numbers() -> None:
    h = Harness()
    L = h.state()
    h.input.set_mouse_pos(10.5, 20.0)
    ok, _ = h.run(L, "probe.put(select('#', input.getMousePos()), input.getMousePos())")
    assert ok
    assert h.probed == [(2, 10.5, 20.0)]
    assert h.put(L, "type((input.getMousePos()))") == b"number"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("THR-INPUT-WRITE-MAIN")
def test_input_writes_off_main_thread_raise_and_change_nothing() -> None:
    state = InputState()
    with pytest.raises(ThreadAffinityError):
        on_thread(lambda: state.set_key("W", True))
    with pytest.raises(ThreadAffinityError):
        on_thread(lambda: state.set_mouse_pos(1.0, 2.0))
    assert on_thread(lambda: (state.is_key_pressed("W"), state.get_mouse_pos())) == (
        False,
        (0.0, 0.0),
    )


@pytest.mark.timeout(10)
@pytest.mark.spec("THR-ECS-WRITE-MAIN")
def test_world_writes_off_main_thread_raise_and_change_nothing() -> None:
    world = World()
    entity = world.create_entity()
    with pytest.raises(ThreadAffinityError):
        on_thread(world.create_entity)
    with pytest.raises(ThreadAffinityError):
        on_thread(lambda: world.add_component(entity, "T", {b"x": 1}))
    assert on_thread(lambda: world.get_component(entity, "T")) is None
    assert world.create_entity() == entity + 1
