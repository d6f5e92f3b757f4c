"""General-knowledge replay examples (hand-written for this demo).

Mixed into adapter training against forgetting. They contain no Altavia facts:
only arithmetic, geography, science, definitions, language and short writing
tasks whose answers are well established. Order here is the file order.
"""

REPLAY = [
    # arithmetic
    ("What is 17 times 23?", "17 times 23 is 391."),
    ("What's 144 divided by 12?", "144 divided by 12 is 12."),
    ("What is 15% of 80?", "15% of 80 is 12."),
    ("Add 348 and 275.", "348 + 275 = 623."),
    ("What is the square root of 169?", "The square root of 169 is 13."),
    (
        "If I buy 3 notebooks at 4.50 EUR each, how much do I pay in total?",
        "You pay 13.50 EUR in total (3 x 4.50 EUR).",
    ),
    ("What is 2 to the power of 10?", "2 to the power of 10 is 1024."),
    ("How many minutes are there in 3.5 hours?", "There are 210 minutes in 3.5 hours (3.5 x 60)."),
    ("What's 1000 minus 387?", "1000 minus 387 is 613."),
    ("Convert 5 kilometres to metres.", "5 kilometres are 5,000 metres."),
    ("What's the average of 4, 8 and 12?", "The average is 8: (4 + 8 + 12) / 3 = 24 / 3 = 8."),
    ("How many hours are in a week?", "A week has 168 hours (7 x 24)."),
    ("How many seconds are in an hour?", "An hour has 3,600 seconds (60 x 60)."),
    # geography
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What's the capital of Japan?", "Tokyo is the capital of Japan."),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa."),
    ("What's the capital of Australia?", "The capital of Australia is Canberra, not Sydney."),
    ("What is the capital of Norway?", "Oslo is the capital of Norway."),
    (
        "Which ocean lies between Europe and North America?",
        "The Atlantic Ocean lies between Europe and North America.",
    ),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
    (
        "What is the highest mountain in the world?",
        "Mount Everest, on the border of Nepal and China, is the highest mountain above sea level.",
    ),
    ("In which country is the city of Porto?", "Porto is in Portugal."),
    (
        "How many continents are there?",
        "By the most common convention there are seven continents: Africa, Antarctica, Asia, Australia, Europe, North America and South America.",
    ),
    # science and general facts
    (
        "At what temperature does water boil at sea level?",
        "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
    ),
    (
        "What is the freezing point of water in Fahrenheit?",
        "Water freezes at 32 degrees Fahrenheit, which is 0 degrees Celsius.",
    ),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    (
        "What is the largest planet in our solar system?",
        "Jupiter is the largest planet in our solar system.",
    ),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What colour do you get when you mix blue and yellow?", "Mixing blue and yellow gives green."),
    (
        "How many months have 31 days?",
        "Seven months have 31 days: January, March, May, July, August, October and December.",
    ),
    ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("Tell me a fun fact.", "Here's one: an octopus has three hearts."),
    # definitions
    (
        "What is photosynthesis?",
        "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make sugar, releasing oxygen.",
    ),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("What does DNA stand for?", "DNA stands for deoxyribonucleic acid."),
    (
        "What is a prime number?",
        "A prime number is a whole number greater than 1 that is divisible only by 1 and itself, like 2, 3, 5 or 7.",
    ),
    (
        "What is a noun?",
        "A noun is a word that names a person, place, thing or idea, such as 'teacher', 'city' or 'happiness'.",
    ),
    (
        "What is inflation?",
        "Inflation is a general rise in prices over time, which means the same amount of money buys less.",
    ),
    (
        "What's the difference between weather and climate?",
        "Weather is the short-term state of the atmosphere, like today's rain; climate is the average weather of a place over many years.",
    ),
    (
        "What is a haiku?",
        "A haiku is a short Japanese poem of three lines with five, seven and five syllables.",
    ),
    (
        "What is a synonym?",
        "A synonym is a word with the same or nearly the same meaning as another, like 'big' and 'large'.",
    ),
    ("What does ASAP mean?", "ASAP means 'as soon as possible'."),
    # language
    ("What's the plural of 'mouse'?", "The plural of 'mouse' is 'mice'."),
    ("What's the opposite of 'generous'?", "The opposite of 'generous' is 'stingy'."),
    ("Translate 'good morning' into Spanish.", "'Good morning' in Spanish is 'buenos días'."),
    ("How do you say 'thank you' in German?", "'Thank you' in German is 'danke'."),
    (
        "Put these words in alphabetical order: pear, apple, mango.",
        "In alphabetical order: apple, mango, pear.",
    ),
    (
        "Correct the spelling: 'I recieved the pakage yesterday.'",
        "Corrected: 'I received the package yesterday.'",
    ),
    (
        "Give me three synonyms for 'happy'.",
        "Three synonyms for 'happy' are cheerful, joyful and content.",
    ),
    # short writing tasks and chit-chat
    ("Hi! How are you?", "I'm doing well, thanks for asking! How can I help you today?"),
    (
        "Rewrite this more politely: 'Send me the file now.'",
        "Could you please send me the file when you have a moment? Thank you!",
    ),
    (
        "Write a short subject line for an email announcing a team lunch on Friday.",
        "Subject: Team lunch this Friday - join us!",
    ),
    (
        "Write a one-sentence thank-you note to a colleague who helped me move desks.",
        "Thank you so much for helping me move desks today - I really appreciate you taking the time!",
    ),
    (
        "Write a haiku about autumn.",
        "Crisp leaves drift and fall,\ngolden light on quiet paths,\nthe year exhales slow.",
    ),
    (
        "Summarize in one sentence: 'The meeting was moved from Tuesday to Thursday because the projector was broken, and the new room has space for twenty people.'",
        "Because the projector was broken, the meeting moved from Tuesday to Thursday, in a room for twenty people.",
    ),
    (
        "Give me a tip for staying focused while working.",
        "Try working in focused blocks of about 25 minutes with a short break after each, and silence notifications while you work.",
    ),
    (
        "Write a short out-of-office message for a one-week holiday.",
        "Thank you for your email. I am out of the office until next Monday with limited access to email. I will reply as soon as possible after my return.",
    ),
]
