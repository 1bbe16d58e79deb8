"""The simulated shop: products, destinations, order facts, and everything the agent and its customers say, in four languages.

Pure data plus tiny lookups; no randomness here (callers pass their own ``random.Random``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "COUNTRIES",
    "LANGUAGES",
    "LOOKUP_TOOL",
    "PRODUCTS",
    "SIM_TOOLS",
    "Country",
    "OrderFacts",
    "Product",
    "detect_language",
    "format_amount",
    "format_price",
    "order_facts",
    "run_sim_tool",
]

LANGUAGES = ("en", "de", "fr", "es")

LOOKUP_TOOL = "lookup_order"

#: The one tool the demo agent has, in OpenAI function-tool form (pass it as ``LLMRequest.tools``).
SIM_TOOLS: list[dict] = [
    {
        "type": "function",
        "function": {
            "name": LOOKUP_TOOL,
            "description": "Look up an order by its number: status, expected delivery date, carrier and total.",
            "parameters": {
                "type": "object",
                "properties": {"order_number": {"type": "string", "description": "The order number, digits only."}},
                "required": ["order_number"],
            },
        },
    }
]


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    price_eur: float
    #: How a customer asks for this kind of product, with its article, per language.
    category: dict[str, str]
    #: What identifies the category in any language (lower case regex).
    category_pattern: str


PRODUCTS: tuple[Product, ...] = (
    Product(
        "shoes", "Trail Runner 2", 89.90,
        {"en": "running shoes", "de": "Laufschuhe", "fr": "des chaussures de course", "es": "unas zapatillas de running"},
        r"running shoes|laufschuhe|chaussures de course|zapatillas",
    ),
    Product(
        "hoodie", "Merino Hoodie", 74.50,
        {"en": "a hoodie", "de": "einen Kapuzenpullover", "fr": "un sweat à capuche", "es": "una sudadera"},
        r"hoodie|kapuzenpullover|sweat à capuche|sudadera",
    ),
    Product(
        "backpack", "Canvas Backpack 20L", 59.00,
        {"en": "a backpack", "de": "einen Rucksack", "fr": "un sac à dos", "es": "una mochila"},
        r"backpack|rucksack|sac à dos|mochila",
    ),
    Product(
        "lamp", "Aalto Desk Lamp", 64.90,
        {"en": "a desk lamp", "de": "eine Schreibtischlampe", "fr": "une lampe de bureau", "es": "una lámpara de escritorio"},
        r"desk lamp|schreibtischlampe|lampe de bureau|lámpara",
    ),
    Product(
        "blanket", "Alpaca Wool Blanket", 119.00,
        {"en": "a blanket", "de": "eine Wolldecke", "fr": "une couverture", "es": "una manta"},
        r"blanket|wolldecke|couverture|manta\b",
    ),
    Product(
        "coffee", "Pour-Over Coffee Set", 42.00,
        {"en": "a coffee set", "de": "ein Kaffeeset", "fr": "un set à café", "es": "un set de café"},
        r"coffee set|kaffeeset|set à café|set de café",
    ),
)


@dataclass(frozen=True)
class Country:
    key: str
    names: dict[str, str]
    pattern: str
    days: int


COUNTRIES: tuple[Country, ...] = (
    Country("austria", {"en": "Austria", "de": "Österreich", "fr": "l'Autriche", "es": "Austria"}, r"austria|österreich|autriche", 3),
    Country("france", {"en": "France", "de": "Frankreich", "fr": "la France", "es": "Francia"}, r"france|frankreich|francia", 4),
    Country("spain", {"en": "Spain", "de": "Spanien", "fr": "l'Espagne", "es": "España"}, r"spain|spanien|espagne|españa", 5),
    Country("italy", {"en": "Italy", "de": "Italien", "fr": "l'Italie", "es": "Italia"}, r"italy|italien|italie|italia", 5),
    Country(
        "netherlands",
        {"en": "the Netherlands", "de": "die Niederlande", "fr": "les Pays-Bas", "es": "los Países Bajos"},
        r"netherlands|niederlande|pays-bas|países bajos",
        3,
    ),
)

# --- Order facts: a pure function of the order number, so a recorded tool result and a fresh lookup agree ---

_STATUSES = ("on_its_way", "processing", "out_for_delivery")
STATUS_WORDS = {
    "on_its_way": {"en": "on its way", "de": "unterwegs", "fr": "en route", "es": "en camino"},
    "processing": {"en": "being prepared", "de": "in Bearbeitung", "fr": "en préparation", "es": "en preparación"},
    "out_for_delivery": {"en": "out for delivery", "de": "in der Zustellung", "fr": "en cours de livraison", "es": "en reparto"},
}
_CARRIERS = ("DHL", "DPD", "GLS", "UPS")


@dataclass(frozen=True)
class OrderFacts:
    order_number: str
    status: str
    eta: str
    carrier: str
    total_eur: float

    def tool_result(self) -> str:
        return json.dumps(
            {"order_number": self.order_number, "status": self.status, "eta": self.eta,
             "carrier": self.carrier, "total_eur": self.total_eur},
            sort_keys=True,
        )

    def api_answer(self) -> str:
        """The exact JSON the API channel expects (also ``outcome.expected``)."""
        return json.dumps({"order_number": self.order_number, "status": self.status, "eta": self.eta}, sort_keys=True)


def order_facts(order_number: str) -> OrderFacts:
    n = int(re.sub(r"\D", "", order_number) or 0)
    eta = date(2026, 12, 1) + timedelta(days=n % 9)
    return OrderFacts(
        order_number=str(order_number),
        status=_STATUSES[n % len(_STATUSES)],
        eta=eta.isoformat(),
        carrier=_CARRIERS[n % len(_CARRIERS)],
        total_eur=round(20 + (n % 230) + (n % 100) / 100, 2),
    )


def run_sim_tool(name: str, arguments: str) -> str:
    """Execute a simulated tool call (what a replay runner feeds back as the ``tool`` message)."""
    if name != LOOKUP_TOOL:
        return json.dumps({"error": f"unknown tool {name}"})
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return json.dumps({"error": "arguments are not JSON"})
    number = str(args.get("order_number", "")) if isinstance(args, dict) else ""
    if not re.fullmatch(r"\d{3,8}", number):
        return json.dumps({"error": "order not found"})
    return order_facts(number).tool_result()


# --- Money formatting ---


def format_price(amount: float, language: str, currency: str = "EUR") -> str:
    if currency == "USD":
        return f"${amount:.2f}"
    if language == "en":
        return f"€{amount:.2f}"
    return f"{amount:.2f}".replace(".", ",") + " €"


def format_amount(amount: int, language: str) -> str:
    return f"€{amount}" if language == "en" else f"{amount} €"


# --- Language detection by function words (good enough for the simulator's own sentences) ---

_FUNCTION_WORDS = {
    "en": {"the", "your", "you", "is", "and", "to", "of", "we", "for", "it", "my", "i", "please", "how", "what",
           "where", "can", "that", "with", "will", "should", "which", "this", "does", "have", "has", "our", "are",
           "hello", "thanks", "regards", "kind"},
    "de": {"der", "die", "das", "ist", "und", "ich", "sie", "ihre", "ihr", "wir", "mein", "meine", "nicht", "bitte",
           "bestellung", "wie", "wo", "für", "mit", "zu", "den", "dem", "ein", "eine", "einen", "uns", "unser",
           "unsere", "kann", "können", "haben", "habe", "guten", "tag", "grüße", "viele", "danke", "was", "nach"},
    "fr": {"le", "les", "est", "et", "je", "vous", "votre", "nous", "notre", "mon", "ma", "pas", "commande",
           "pour", "avec", "du", "des", "une", "où", "combien", "bonjour", "merci", "cordialement", "sur", "dans",
           "au", "aux", "ce", "c'est", "elle", "il", "l'article", "j'ai", "qui", "sous"},
    "es": {"el", "los", "las", "es", "y", "yo", "usted", "su", "sus", "nosotros", "mi", "pedido", "para", "con",
           "del", "una", "dónde", "cuánto", "por", "hola", "gracias", "saludos", "cordiales", "está", "le", "nuestro",
           "nuestra", "qué", "que", "he", "muy", "en", "días"},
}
_WORD_RE = re.compile(r"[a-zà-ÿ']+")


def detect_language(text: str) -> str:
    """The most likely of en/de/fr/es; English when nothing points elsewhere."""
    words = _WORD_RE.findall(text.lower())
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _FUNCTION_WORDS.items()}
    if "¿" in text or "¡" in text:
        scores["es"] += 2
    best = max(LANGUAGES, key=lambda lang: (scores[lang], lang == "en"))
    return best if scores[best] > 0 else "en"


# --- What the customer says ---

REQUESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {
        "en": ("Hi, where is my order #{order}? It still hasn't arrived.",
               "Can you tell me the status of order #{order}, please?"),
        "de": ("Hallo, wo ist meine Bestellung #{order}? Sie ist immer noch nicht angekommen.",
               "Können Sie mir bitte den Status der Bestellung #{order} sagen?"),
        "fr": ("Bonjour, où en est ma commande #{order} ? Je ne l'ai toujours pas reçue.",
               "Pouvez-vous me donner le statut de la commande #{order}, s'il vous plaît ?"),
        "es": ("Hola, ¿dónde está mi pedido #{order}? Todavía no ha llegado.",
               "¿Me puede decir el estado del pedido #{order}, por favor?"),
    },
    "price_question": {
        "en": ("How much does the {product} cost?", "What's the price of the {product}?"),
        "de": ("Was kostet der Artikel {product}?", "Wie viel kostet {product} bei Ihnen?"),
        "fr": ("Combien coûte l'article {product} ?", "Quel est le prix du {product} ?"),
        "es": ("¿Cuánto cuesta el artículo {product}?", "¿Qué precio tiene el {product}?"),
    },
    "refund_request": {
        "en": ("I'd like a refund for order #{order}, I paid {amount} and the item doesn't fit.",
               "Please refund my order #{order} ({amount}), I changed my mind."),
        "de": ("Ich möchte eine Rückerstattung für die Bestellung #{order}, ich habe {amount} bezahlt und der Artikel passt nicht.",
               "Bitte erstatten Sie mir die Bestellung #{order} ({amount}), ich habe es mir anders überlegt."),
        "fr": ("Je voudrais un remboursement pour la commande #{order}, j'ai payé {amount} et l'article ne me va pas.",
               "Merci de rembourser ma commande #{order} ({amount}), j'ai changé d'avis."),
        "es": ("Quiero un reembolso del pedido #{order}, pagué {amount} y el artículo no me queda bien.",
               "Por favor, reembolsen mi pedido #{order} ({amount}), he cambiado de opinión."),
    },
    "shipping_time": {
        "en": ("How long does shipping to {country} take?", "If I order today, how long until it's delivered to {country}?"),
        "de": ("Wie lange dauert der Versand nach {country}?", "Wie lange dauert die Lieferung nach {country}, wenn ich heute bestelle?"),
        "fr": ("Combien de temps prend la livraison pour {country} ?", "Si je commande aujourd'hui, combien de temps faut-il pour une livraison vers {country} ?"),
        "es": ("¿Cuánto tarda el envío a {country}?", "Si pido hoy, ¿cuánto tarda el envío a {country}?"),
    },
    "product_recommendation": {
        "en": ("Can you recommend {category} under {budget}?", "I'm looking for {category}, my budget is {budget}. What do you suggest?"),
        "de": ("Können Sie mir {category} für höchstens {budget} empfehlen?", "Ich suche {category} bis {budget}. Was empfehlen Sie?"),
        "fr": ("Pouvez-vous me recommander {category} à moins de {budget} ?", "Je cherche {category}, mon budget est de {budget}. Que me recommandez-vous ?"),
        "es": ("¿Me puede recomendar {category} por menos de {budget}?", "Busco {category}, mi presupuesto es de {budget}. ¿Qué me recomienda?"),
    },
    "complaint": {
        "en": ("My order #{order} arrived damaged. This is unacceptable!", "The item from order #{order} is broken, I'm really disappointed."),
        "de": ("Meine Bestellung #{order} kam beschädigt an. Das ist inakzeptabel!", "Der Artikel aus der Bestellung #{order} ist kaputt, ich bin wirklich enttäuscht."),
        "fr": ("Ma commande #{order} est arrivée endommagée. C'est inacceptable !", "L'article de la commande #{order} est cassé, je suis vraiment déçu."),
        "es": ("Mi pedido #{order} llegó dañado. ¡Es inaceptable!", "El artículo del pedido #{order} está roto, estoy muy decepcionado."),
    },
    "opening_hours": {
        "en": ("When is your customer service available?", "Can I reach you by phone on weekends?"),
        "de": ("Wann ist Ihr Kundenservice erreichbar?", "Kann ich Sie am Wochenende telefonisch erreichen?"),
        "fr": ("Quand votre service client est-il disponible ?", "Puis-je vous joindre par téléphone le week-end ?"),
        "es": ("¿Cuándo está disponible su servicio de atención al cliente?", "¿Puedo llamarles por teléfono el fin de semana?"),
    },
}

#: How the agent recognises a request type in any language, checked in this order.
KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    ("refund_request", r"refund|rückerstattung|erstatten|rembours|reembols"),
    ("complaint", r"damaged|broken|unacceptable|disappointed|beschädigt|kaputt|inakzeptabel|enttäuscht|endommag|cassé|inacceptable|déçu|dañado|roto\b|inaceptable|decepcionad"),
    ("product_recommendation", r"recommend|suggest|empfehl|recommand|recomend|recomiend"),
    ("shipping_time", r"how long|delivered to|shipping to|wie lange|versand|lieferung|combien de temps|livraison|cuánto tarda|envío"),
    ("order_status", r"where is|status|wo ist|où en est|statut|dónde está|estado|track"),
    ("price_question", r"how much|price|cost|was kostet|wie viel kostet|preis|combien coûte|prix|cuánto cuesta|precio"),
    ("opening_hours", r"customer service|reach you|weekend|opening hours|kundenservice|erreich|wochenende|service client|joindre|week-end|atención al cliente|fin de semana"),
)

THANKS = {"en": ("Thanks!", "Great, thank you."), "de": ("Danke!", "Super, vielen Dank."),
          "fr": ("Merci !", "Parfait, merci beaucoup."), "es": ("¡Gracias!", "Perfecto, muchas gracias.")}
THANKS_PATTERN = r"^\W*(thanks|thank you|great, thank|danke|super, vielen dank|merci|parfait, merci|gracias|perfecto, muchas)"

# --- What the agent says ---

GREETING = {"en": "Hello!", "de": "Guten Tag!", "fr": "Bonjour !", "es": "¡Hola!"}
SIGNOFF = {"en": "Kind regards,\n{shop}", "de": "Viele Grüße,\n{shop}", "fr": "Cordialement,\n{shop}", "es": "Saludos cordiales,\n{shop}"}
GREETING_PATTERN = r"^\W*(hello|hi\b|dear|good (morning|afternoon|evening)|guten tag|hallo|bonjour|hola|buenos días|buenas)"
SIGNOFF_PATTERN = r"regards|grüße|cordialement|saludos|sincerely|best wishes"

#: The order as a noun phrase: with its number when the agent includes it, without when it does not.
ORDER_PHRASE = {
    "en": ("order #{n}", "your order"),
    "de": ("die Bestellung #{n}", "Ihre Bestellung"),
    "fr": ("la commande #{n}", "votre commande"),
    "es": ("el pedido #{n}", "su pedido"),
}

ANSWERS: dict[str, dict[str, str]] = {
    "order_status": {
        "en": "I checked {order} for you: it is {status} and should arrive on {eta}.",
        "de": "Ich habe {order} für Sie geprüft: Sie ist {status} und sollte am {eta} ankommen.",
        "fr": "J'ai vérifié {order} pour vous : elle est {status} et devrait arriver le {eta}.",
        "es": "He revisado {order}: está {status} y debería llegar el {eta}.",
    },
    "price_question": {
        "en": "The {product} costs {price}.",
        "de": "Der Artikel {product} kostet {price}.",
        "fr": "L'article {product} coûte {price}.",
        "es": "El artículo {product} cuesta {price}.",
    },
    "refund_small": {
        "en": "I have started the refund of {amount} for {order}; the money will be back on your account within 5 business days.",
        "de": "Ich habe die Rückerstattung von {amount} für {order} veranlasst; das Geld ist innerhalb von 5 Werktagen auf Ihrem Konto.",
        "fr": "J'ai lancé le remboursement de {amount} pour {order} ; l'argent sera sur votre compte sous 5 jours ouvrés.",
        "es": "He iniciado el reembolso de {amount} para {order}; el dinero estará en su cuenta en 5 días hábiles.",
    },
    "refund_escalated": {
        "en": "Refunds above {limit} are handled by our customer care team, so I have passed {order} to a human colleague who will contact you within 24 hours.",
        "de": "Rückerstattungen über {limit} prüft unser Kundenservice-Team, daher habe ich {order} an einen menschlichen Kollegen weitergeleitet, der sich innerhalb von 24 Stunden bei Ihnen meldet.",
        "fr": "Les remboursements de plus de {limit} sont traités par notre équipe service client : j'ai transmis {order} à un collègue humain qui vous contactera sous 24 heures.",
        "es": "Los reembolsos de más de {limit} los gestiona nuestro equipo de atención al cliente, así que he pasado {order} a un compañero humano que le contactará en 24 horas.",
    },
    "refund_voucher": {
        "en": "Unfortunately I cannot refund {amount} for {order}. I can offer you a store voucher of the same value instead.",
        "de": "Leider kann ich {amount} für {order} nicht erstatten. Ich kann Ihnen stattdessen einen Gutschein über denselben Betrag anbieten.",
        "fr": "Malheureusement, je ne peux pas rembourser {amount} pour {order}. Je peux vous proposer à la place un bon d'achat du même montant.",
        "es": "Lamentablemente no puedo reembolsar {amount} para {order}. En su lugar puedo ofrecerle un vale por el mismo importe.",
    },
    "shipping_time": {
        "en": "Shipping to {country} usually takes {days} business days.",
        "de": "Der Versand nach {country} dauert in der Regel {days} Werktage.",
        "fr": "La livraison pour {country} prend généralement {days} jours ouvrés.",
        "es": "El envío a {country} suele tardar {days} días hábiles.",
    },
    "product_recommendation": {
        "en": "I recommend the {product}: it costs {price} and is one of our best sellers.",
        "de": "Ich empfehle Ihnen {product}: Es kostet {price} und gehört zu unseren Bestsellern.",
        "fr": "Je vous recommande l'article {product} : il coûte {price} et fait partie de nos meilleures ventes.",
        "es": "Le recomiendo el artículo {product}: cuesta {price} y es uno de nuestros más vendidos.",
    },
    "complaint": {
        "en": "I am very sorry that {order} arrived damaged. We will send you a free replacement, which should arrive within 3 business days.",
        "de": "Es tut mir sehr leid, dass {order} beschädigt angekommen ist. Wir senden Ihnen kostenlos einen Ersatz, der innerhalb von 3 Werktagen ankommen sollte.",
        "fr": "Je suis vraiment désolé que {order} soit arrivée endommagée. Nous vous envoyons gratuitement un remplacement, qui devrait arriver sous 3 jours ouvrés.",
        "es": "Siento mucho que {order} haya llegado dañado. Le enviaremos un reemplazo gratuito, que debería llegar en 3 días hábiles.",
    },
    "opening_hours": {
        "en": "Our customer service is available Monday to Friday from 9:00 to 18:00; at weekends you can reach us by email.",
        "de": "Unser Kundenservice ist von Montag bis Freitag von 9:00 bis 18:00 Uhr erreichbar; am Wochenende erreichen Sie uns per E-Mail.",
        "fr": "Notre service client est disponible du lundi au vendredi de 9h00 à 18h00 ; le week-end, vous pouvez nous écrire par e-mail.",
        "es": "Nuestro servicio de atención al cliente está disponible de lunes a viernes de 9:00 a 18:00; el fin de semana puede escribirnos por correo.",
    },
    "thanks": {
        "en": "You're welcome! Have a great day.",
        "de": "Gern geschehen! Einen schönen Tag noch.",
        "fr": "Avec plaisir ! Bonne journée.",
        "es": "¡De nada! Que tenga un buen día.",
    },
    "general": {
        "en": "Thank you for your message. Could you tell me a little more so that I can help you?",
        "de": "Vielen Dank für Ihre Nachricht. Können Sie mir etwas mehr erzählen, damit ich Ihnen helfen kann?",
        "fr": "Merci pour votre message. Pouvez-vous m'en dire un peu plus pour que je puisse vous aider ?",
        "es": "Gracias por su mensaje. ¿Puede contarme un poco más para que pueda ayudarle?",
    },
}

#: What an uninstructed agent pads its answers with when it rambles (never mentions money, vouchers or people).
FILLER: dict[str, tuple[str, ...]] = {
    "en": (
        "As a valued customer, you can always reach our support team through the help centre, by email or by phone during business hours.",
        "Our warehouse team carefully checks every item before it leaves, and we pack everything in recycled materials to protect both your parcel and the planet.",
        "Please also remember that our return policy gives you thirty days to send back any item in its original condition, free of charge.",
        "You can follow every update in your customer account under 'My orders', where the carrier's tracking information appears as soon as it is scanned.",
        "By the way, subscribers to our newsletter get early access to seasonal sales, exclusive discounts and tips on caring for the products they bought.",
        "If anything else comes up about our products, delivery options or payment methods, do not hesitate to write to us again at any time.",
    ),
    "de": (
        "Als geschätzter Kunde können Sie unser Support-Team jederzeit über das Hilfe-Center, per E-Mail oder während der Geschäftszeiten telefonisch erreichen.",
        "Unser Lagerteam prüft jeden Artikel sorgfältig, bevor er das Haus verlässt, und wir verpacken alles in recyceltem Material, um Ihr Paket und die Umwelt zu schützen.",
        "Bitte denken Sie auch daran, dass Sie mit unserer Rückgaberichtlinie dreißig Tage Zeit haben, um jeden Artikel im Originalzustand kostenlos zurückzusenden.",
        "Alle Neuigkeiten finden Sie in Ihrem Kundenkonto unter „Meine Bestellungen“, wo die Sendungsverfolgung erscheint, sobald das Paket gescannt wird.",
        "Übrigens erhalten die Abonnenten unseres Newsletters frühzeitig Zugang zu saisonalen Angeboten, exklusiven Rabatten und Pflegetipps für ihre Produkte.",
        "Wenn Sie weitere Fragen zu unseren Produkten, Lieferoptionen oder Zahlungsmethoden haben, schreiben Sie uns jederzeit gerne wieder.",
    ),
    "fr": (
        "En tant que client privilégié, vous pouvez toujours joindre notre équipe d'assistance via le centre d'aide, par e-mail ou par téléphone aux heures d'ouverture.",
        "Notre équipe d'entrepôt vérifie soigneusement chaque article avant son départ, et nous emballons tout dans des matériaux recyclés pour protéger votre colis et la planète.",
        "N'oubliez pas non plus que notre politique de retour vous laisse trente jours pour renvoyer gratuitement tout article dans son état d'origine.",
        "Vous pouvez suivre chaque étape dans votre compte client, rubrique « Mes commandes », où le suivi du transporteur apparaît dès que le colis est scanné.",
        "Au fait, les abonnés à notre newsletter profitent d'un accès anticipé aux soldes, de réductions exclusives et de conseils d'entretien pour leurs produits.",
        "Si vous avez d'autres questions sur nos produits, les options de livraison ou les moyens de paiement, n'hésitez pas à nous écrire à tout moment.",
    ),
    "es": (
        "Como cliente valioso, siempre puede contactar con nuestro equipo de soporte a través del centro de ayuda, por correo electrónico o por teléfono en horario comercial.",
        "Nuestro equipo de almacén revisa con cuidado cada artículo antes de enviarlo, y lo embalamos todo con materiales reciclados para proteger su paquete y el planeta.",
        "Recuerde también que nuestra política de devoluciones le da treinta días para devolver gratis cualquier artículo en su estado original.",
        "Puede seguir cada novedad en su cuenta de cliente, en «Mis pedidos», donde aparece el seguimiento del transportista en cuanto se escanea el paquete.",
        "Por cierto, los suscriptores de nuestro boletín tienen acceso anticipado a las rebajas, descuentos exclusivos y consejos para cuidar sus productos.",
        "Si tiene más preguntas sobre nuestros productos, opciones de envío o métodos de pago, no dude en escribirnos de nuevo en cualquier momento.",
    ),
}
